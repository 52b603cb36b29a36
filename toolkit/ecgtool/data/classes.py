"""The paper's seven rhythm classes, in the paper's order, and their share of its 28,308 records."""

DEFAULT_CLASSES: list[str] = ["Normal", "AF", "AFL", "FAB", "SB", "ST", "PVC"]

#: Share (%) of each class in the paper's data set, in DEFAULT_CLASSES order.
PAPER_SHARES: list[float] = [34.48, 33.86, 6.17, 6.90, 6.87, 6.20, 5.53]

CLASS_DESCRIPTIONS: dict[str, str] = {
    "Normal": "normal sinus rhythm",
    "AF": "atrial fibrillation",
    "AFL": "atrial flutter",
    "FAB": "first-degree AV block",
    "SB": "sinus bradycardia",
    "ST": "sinus tachycardia",
    "PVC": "premature ventricular contraction(s)",
}

#: Classes defined by the sinus rate (bpm; None: unbounded), the clinical definitions: sinus rhythm 60-100,
#: sinus bradycardia under 60, sinus tachycardia over 100. `data info --rates` checks labels against them.
RATE_DEFINITIONS: dict[str, tuple[float | None, float | None]] = {
    "Normal": (60.0, 100.0),
    "SB": (None, 60.0),
    "ST": (100.0, None),
}
