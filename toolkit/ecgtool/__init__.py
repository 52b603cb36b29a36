"""ecgtool: train, compress, compile and benchmark 1-D SE-ResNet ECG rhythm classifiers.

The main functions, imported on first use (`import ecgtool` stays light: no torch, onnx or scipy):

    load(artifact)                  open any artifact (model folder, .onnx, OpenVINO .xml, ...) as a predictor
    train(data, archs, depths, out) train every arch x depth into a run folder (ecgtool.train.run.train_models)
    evaluate(artifact, data)        metrics of any artifact on a dataset split
    prune(model, data, ratio)       structured pruning + fine-tuning into a new model folder
    quantize(model, data)           static INT8 (QDQ) of a model folder's ONNX, with its cost in F1
    export(model, fmt)              one export format (ecgtool.export.FORMATS), checked against PyTorch
    bench(paths, data)              latency, size and F1 of every artifact side by side
    report(run)                     report.html + report.md of a benched run
    predict(artifact, records)      rhythm per window of record files
    predict_array(model, signal, fs)  the same for an in-memory array [T] or [C, T]
    package(artifact, out)          a deploy bundle that runs without torch
    search(data, budget_ms=...)     models that fit a latency / size budget
    pipeline(config, out)           data -> ... -> report from one config (ecgtool.pipeline.run.run_pipeline)

train, evaluate, export, bench, report, search and pipeline are also the stage subpackages
(ecgtool.train.run, ...): those modules are callable (ecgtool.core.api) and call the function.
"""

__version__ = "0.1.0"

#: public name -> "module:attribute" (a stage subpackage where the name is one: the module is callable)
_API = {
    "load": "ecgtool.runtime.registry:load",
    "train": "ecgtool.train",
    "evaluate": "ecgtool.evaluate",
    "prune": "ecgtool.compress.prune:prune_artifact",
    "quantize": "ecgtool.export.int8:quantize_folder",
    "export": "ecgtool.export",
    "bench": "ecgtool.bench",
    "report": "ecgtool.report",
    "predict": "ecgtool.deploy.predict:predict",
    "predict_array": "ecgtool.deploy.predict:predict_array",
    "package": "ecgtool.deploy.package:package",
    "search": "ecgtool.search",
    "pipeline": "ecgtool.pipeline",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'ecgtool' has no attribute {name!r}")
    import importlib

    module, _, attr = target.partition(":")
    value = importlib.import_module(module)
    return getattr(value, attr) if attr else value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
