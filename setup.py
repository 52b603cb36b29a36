from setuptools import find_packages, setup

setup(
    name="ecgtool",
    version="0.1.0",
    description="Train, compress, compile and benchmark 1-D SE-ResNet ECG rhythm classifiers for edge devices",
    package_dir={"": "toolkit"},
    packages=find_packages("toolkit"),
    package_data={"ecgtool.pipeline": ["default.yaml"], "ecgtool.data": ["labelsets/*.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        # A range that the CPU build 2.13.0 on this machine satisfies; never pin a CUDA wheel.
        "torch>=2.3,<2.15",
        "numpy>=1.24",
        "scipy>=1.10",
        "wfdb>=4.1",
        "scikit-learn>=1.3",
        # the RR baseline's classifier as ONNX in deploy bundles (baseline/onnx.py); pulls nothing else here
        "skl2onnx>=1.17",
        "torch-pruning>=1.4",
        "onnx>=1.16",
        "onnxscript>=0.1",
        "onnxruntime>=1.18",
        "openvino>=2024.0",
        "safetensors>=0.4",
        "click>=8.1",
        "rich>=13",
        "matplotlib>=3.7",
        "pyyaml>=6",
    ],
    extras_require={
        "tensorrt": ["tensorrt>=10.0"],
        # OpenVINO's own post-training INT8 quantiser for `export --format openvino-int8` (used when installed);
        # nncf 3.4 pulls no torch (checked with pip --dry-run against torch 2.13.0+cpu)
        "nncf": ["nncf>=3.4"],
        "dev": ["pytest>=7", "pytest-xdist>=3.5", "hypothesis>=6.100", "ruff>=0.5"],
        # Microcontrollers (issue 13): PyTorch -> .tflite (litert-torch, which brings ai-edge-quantizer and
        # ai-edge-litert) and the real TensorFlow Lite Micro interpreter. Heavy (~1.2 GB: jax, transformers,
        # torchao) and it downgrades typing_extensions, so it is an extra, never install_requires.
        # onnx2tf is not an option here: 2.x needs Python >= 3.12, 1.29 hard-pins tensorflow 2.19 / numpy 1.26.
        "mcu": ["litert-torch==0.10.0", "ai-edge-quantizer>=0.10", "tflite-micro==0.dev20261023182759"],
    },
    entry_points={"console_scripts": ["ecgtool=ecgtool.cli.main:main"]},
)
