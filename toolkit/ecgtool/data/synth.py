"""Synthetic 10-s lead-II ECGs for the paper's seven rhythm classes: the embedded default dataset.

Each beat is a sum of Gaussians (P, Q, R, S and an asymmetric T), in the spirit of McSharry et al.'s
ECGSYN (IEEE TBME 2003, T and QT scaled with sqrt(RR)), placed on a rhythm-specific beat sequence.
Fibrillatory (AF) or flutter (AFL) waves replace P waves where the rhythm has them; baseline wander,
muscle (EMG) noise, mains hum and electrode motion are mixed at a signal-to-noise ratio drawn
independently of the class; each record is then min-max normalised to [0, 1] as in the paper.

Everything is drawn with numpy over blocks of records (arrays of records x beats, one scatter-add per
wave type), so the paper's 28,308 records take seconds, not minutes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np
from scipy import signal as sps

from ecgtool.core.errors import BadInput
from ecgtool.core.ui import quiet_option
from ecgtool.data.classes import DEFAULT_CLASSES, PAPER_SHARES

FS = 200  #: sampling rate (Hz)
SECONDS = 10  #: record length (s)
DEFAULT_TOTAL = 2100  #: default dataset size for `ecgtool data synth`
MIN_PER_CLASS = 6  #: smallest class size for which the stratified 64/16/20 split gives every split each class
GENERATOR_VERSION = 1  #: the standard morphology (its bytes never change)
DIVERSE_VERSION = 2  #: generator version written for `--morphology diverse`
MORPHOLOGIES = ("standard", "diverse")
#: frontal-plane angle (degrees) of each limb lead (hexaxial reference system)
LEAD_ANGLE_DEG = {"I": 0.0, "II": 60.0, "III": 120.0, "aVR": -150.0, "aVL": -30.0, "aVF": 90.0}
LEADS = (*LEAD_ANGLE_DEG, "random")
_BLOCK = 1024  #: records generated together; fixed so output never depends on memory or speed
_MIN_RR_S = 0.27  #: shortest RR interval any rhythm draws (s); sizes the beat slots per record
_PAD_S = 1.0  #: padding (s) on each side of the record while beats are drawn

_C = {name: i for i, name in enumerate(DEFAULT_CLASSES)}
_SINUS = np.array([name not in ("AF", "AFL") for name in DEFAULT_CLASSES])


def _table(values: dict[str, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([values.get(c, (0.0, 0.0))[0] for c in DEFAULT_CLASSES], dtype=np.float64)
    hi = np.array([values.get(c, (0.0, 0.0))[1] for c in DEFAULT_CLASSES], dtype=np.float64)
    return lo, hi


#: Mean heart rate (bpm) per record. The sinus classes touch at 60 and 100 bpm; respiratory sinus
#: arrhythmia and beat jitter then carry single beats and some 10-s means across those edges.
HEART_RATE_BPM = {"Normal": (60, 100), "AF": (60, 150), "FAB": (60, 100), "SB": (38, 60),
                  "ST": (100, 160), "PVC": (60, 100)}
#: PR interval (ms, P onset to QRS onset); first-degree AV block above 200 ms.
PR_MS = {"Normal": (120, 200), "FAB": (215, 360), "SB": (130, 200), "ST": (115, 175), "PVC": (120, 200)}
QRS_MS = (70.0, 110.0)  #: narrow (supraventricular) QRS duration
PVC_QRS_MS = (125.0, 180.0)  #: wide ectopic QRS duration
FLUTTER_PER_MIN = (240.0, 340.0)
FIB_HZ = (4.5, 8.5)  #: centre of the fibrillatory-wave frequency; its modulation stays within 4-9 Hz
SNR_DB = (6.0, 30.0)
_HR_LO, _HR_HI = _table(HEART_RATE_BPM)
_PR_LO, _PR_HI = _table(PR_MS)
_CONDUCTION = ("2:1", "3:1", "4:1", "variable")
_CONDUCTION_P = (0.45, 0.1, 0.25, 0.2)


#: --morphology diverse: what each record draws, independently of its rhythm class
DIVERSE = {
    "qrs_axis_deg": {"normal": (-30.0, 90.0), "left": (-90.0, -30.0), "right": (90.0, 150.0), "p": (0.8, 0.12, 0.08)},
    "p_axis_deg": (0.0, 75.0), "t_axis_offset_deg": (-40.0, 40.0),
    "bbb_p": 0.15, "bbb_qrs_ms": (120.0, 170.0),  #: bundle-branch-like wide QRS, any rhythm, discordant T
    "t_inversion_p": 0.12,  #: primary T inversion (T vector turned by 180 degrees)
    "low_voltage_p": 0.1, "low_voltage_gain": (0.3, 0.5),  #: all waves scaled down; the noise is not
    "pvc_min_ratio": 1.5, "pvc_max_ms": 240.0,  #: ectopic QRS at least 1.5x the record's own QRS
    "min_projection": {"QRS": 0.35, "P": 0.5, "PVC": 0.5, "atrial": 0.5},  #: |cos| each lead must see
    # per noise component: probability present, SNR (dB) against the record's clean signal at normal voltage
    "noise": {"baseline": (0.9, (5.0, 25.0)), "emg": (0.8, (10.0, 35.0)), "mains": (0.35, (15.0, 40.0)),
              "motion": (0.3, (0.0, 18.0))},
}


def _visible_angle(rng: np.random.Generator, draw: Callable[[int], np.ndarray], lead_deg: np.ndarray,
                   min_cos: float, rounds: int = 12) -> np.ndarray:
    """Angles (degrees) from `draw`, redrawn (vectorised rejection) where the lead would see less than
    `min_cos` of the vector; the few left after `rounds` are put on the lead axis."""
    ang = draw(len(lead_deg))
    for _ in range(rounds):
        bad = np.abs(np.cos(np.radians(ang - lead_deg))) < min_cos
        if not bad.any():
            break
        ang = np.where(bad, draw(len(lead_deg)), ang)
    bad = np.abs(np.cos(np.radians(ang - lead_deg))) < min_cos
    return np.where(bad, lead_deg, ang)


def _morphology(rng: np.random.Generator, n: int, lead: str) -> dict[str, np.ndarray]:
    """Per-record morphology of `--morphology diverse`: a frontal-plane dipole (P, Q, R, S, T and ectopic
    vectors) projected on the record's limb lead, bundle-branch-like wide QRS, T inversion, low voltage.

    Each factor is cos(vector angle - lead angle), the lead's view of a unit vector; the standard
    generator's amplitudes become the vectors' magnitudes.
    """
    D = DIVERSE
    names = list(LEAD_ANGLE_DEG)
    lead_idx = rng.integers(0, len(names), n) if lead == "random" else np.full(n, names.index(lead))
    lead_deg = np.array([LEAD_ANGLE_DEG[k] for k in names])[lead_idx]
    ax = D["qrs_axis_deg"]

    def qrs_axis(m: int) -> np.ndarray:
        kind = rng.choice(3, size=m, p=ax["p"])
        lo = np.array([ax["normal"][0], ax["left"][0], ax["right"][0]])[kind]
        hi = np.array([ax["normal"][1], ax["left"][1], ax["right"][1]])[kind]
        return _u(rng, lo, hi, m)

    vis = D["min_projection"]
    axis = _visible_angle(rng, qrs_axis, lead_deg, vis["QRS"])
    p_axis = _visible_angle(rng, lambda m: _u(rng, *D["p_axis_deg"], m), lead_deg, vis["P"])
    pvc_axis = _visible_angle(rng, lambda m: _u(rng, -180.0, 180.0, m), lead_deg, vis["PVC"])
    atrial_axis = _visible_angle(rng, lambda m: _u(rng, -180.0, 180.0, m), lead_deg, vis["atrial"])
    bbb = rng.uniform(size=n) < D["bbb_p"]
    t_inv = rng.uniform(size=n) < D["t_inversion_p"]
    # T concordant with the QRS within +-40 degrees; turned by 180 for primary inversion, and again
    # (secondary, discordant) in bundle-branch block: an inverted T with BBB points along the QRS
    t_axis = axis + _u(rng, *D["t_axis_offset_deg"], n) + 180.0 * (t_inv ^ bbb)
    notch_axis = axis + np.where(rng.uniform(size=n) < 0.5, 0.0, 180.0) + _u(rng, -30.0, 30.0, n)
    low = rng.uniform(size=n) < D["low_voltage_p"]

    def proj(a: np.ndarray) -> np.ndarray:
        return np.cos(np.radians(a - lead_deg))[:, None]

    return {"lead": np.array(names)[lead_idx], "axis": axis, "bbb": bbb, "t_inverted": t_inv, "low_voltage": low,
            "bbb_qrs": _u(rng, *D["bbb_qrs_ms"], n) / 1000, "notch_amp": _u(rng, 0.3, 0.7, n)[:, None],
            "P": proj(p_axis), "Q": proj(axis + 150.0), "R": proj(axis), "S": proj(axis + 220.0), "T": proj(t_axis),
            "notch": proj(notch_axis), "PVC": proj(pvc_axis), "atrial": proj(atrial_axis)[:, 0],
            "gain": np.where(low, _u(rng, *D["low_voltage_gain"], n), 1.0)}


def class_counts(per_class: int | None = None, total: int | None = None, balance: str = "paper") -> np.ndarray:
    """Records per class (DEFAULT_CLASSES order): `per_class` each, or `total` split by the paper's
    shares (largest-remainder rounding) or equally (`balance="equal"`); default total 2100."""
    if per_class is not None and total is not None:
        raise ValueError("give per_class or total, not both")
    k = len(DEFAULT_CLASSES)
    if per_class is not None:
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        return np.full(k, int(per_class), dtype=np.int64)
    total = DEFAULT_TOTAL if total is None else int(total)
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    if balance not in ("paper", "equal"):
        raise ValueError(f"balance must be 'paper' or 'equal', got {balance!r}")
    shares = np.asarray(PAPER_SHARES if balance == "paper" else [1.0] * k, dtype=np.float64)
    raw = total * shares / shares.sum()
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def _u(rng: np.random.Generator, lo: Any, hi: Any, size: Any = None) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size) * (np.asarray(hi) - np.asarray(lo)) + np.asarray(lo)


def _beat_times(rng: np.random.Generator, lab: np.ndarray, seconds: float) -> dict[str, np.ndarray]:
    """R-peak times (s) [n, B] and rhythm parameters for one block of records."""
    n, B = len(lab), int(np.ceil((seconds + 2.6) / _MIN_RR_S)) + 1
    is_af, is_afl, is_pvc = lab == _C["AF"], lab == _C["AFL"], lab == _C["PVC"]
    idx = np.arange(B)[None, :]
    # AFL: every k-th flutter wave conducted, fixed k or a variable mix of 2, 3 and 4
    flutter = _u(rng, *FLUTTER_PER_MIN, n)
    cond = rng.choice(len(_CONDUCTION), size=n, p=_CONDUCTION_P)
    k_fixed = np.array([2, 3, 4, 0])[cond][:, None]
    k = np.where(cond[:, None] == 3, rng.choice([2, 2, 3, 4], size=(n, B)), k_fixed)
    rr_afl = k * (60.0 / flutter)[:, None]
    hr = np.where(is_afl, 1.0, _u(rng, _HR_LO[lab], _HR_HI[lab], n))
    rr0 = np.where(is_afl, rr_afl.mean(axis=1), 60.0 / hr)
    # sinus: respiratory sinus arrhythmia plus a little beat-to-beat jitter
    resp_hz = _u(rng, 0.15, 0.4, n)
    resp_phase = _u(rng, 0, 2 * np.pi, n)
    rsa = _u(rng, 0.01, 0.05, n)
    resp = np.sin(2 * np.pi * resp_hz[:, None] * idx * rr0[:, None] + resp_phase[:, None])
    rr_sinus = rr0[:, None] * (1 + rsa[:, None] * resp) * (1 + 0.01 * rng.standard_normal((n, B)))
    # AF: irregularly irregular, i.i.d. log-normal intervals around the mean rate
    af_sd = _u(rng, 0.12, 0.35, n)[:, None]
    rr_af = rr0[:, None] * np.exp(af_sd * rng.standard_normal((n, B)) - af_sd ** 2 / 2)
    rr_af = np.maximum(rr_af, 0.28)
    rr = np.where(is_af[:, None], rr_af, np.where(is_afl[:, None], rr_afl, rr_sinus))
    t0 = -0.6 - rng.uniform(0, 1, n) * rr[:, 0]
    t = t0[:, None] + np.concatenate([np.zeros((n, 1)), np.cumsum(rr[:, :-1], axis=1)], axis=1)
    if (t[:, -1] < seconds + 0.6).any():  # cannot happen with the rate limits above; guard the invariant
        raise RuntimeError("synthetic beat sequence shorter than the record")
    # PVC: 1-3 premature wide beats on beats of one parity (never adjacent), full compensatory pause
    n_pvc = np.where(is_pvc, rng.choice([1, 2, 3], size=n, p=[0.5, 0.3, 0.2]), 0)
    parity = rng.integers(0, 2, n)[:, None]
    cand = (t > 0.8) & (t < seconds - 1.0) & (idx % 2 == parity) & (idx > 0)
    keys = np.where(cand, rng.uniform(0, 1, (n, B)), np.inf)
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    ectopic = cand & (rank < n_pvc[:, None])
    n_pvc = ectopic.sum(axis=1)
    coupling = _u(rng, 0.45, 0.7, (n, 1))
    t_prev = np.concatenate([t[:, :1] - rr[:, :1], t[:, :-1]], axis=1)
    t = np.where(ectopic, t_prev + coupling * (t - t_prev), t)
    inside = (t >= 0) & (t < seconds)
    n_in = inside.sum(axis=1)
    span = np.where(inside, t, -np.inf).max(axis=1) - np.where(inside, t, np.inf).min(axis=1)
    hr_measured = 60.0 * (n_in - 1) / np.maximum(span, 1e-9)
    return {"t": t, "rr0": rr0, "ectopic": ectopic, "n_pvc": n_pvc, "resp_hz": resp_hz,
            "resp_phase": resp_phase, "flutter": flutter, "cond": cond, "hr": hr_measured}


def _scatter(buf: np.ndarray, rec: np.ndarray, centre: np.ndarray, amp: np.ndarray,
             sig_l: np.ndarray, sig_r: np.ndarray, half: int) -> None:
    """Add Gaussians (centre and widths in samples, amp in mV) into buf [n, Lp], each on +-half samples.

    A wave whose window leaves the padded buffer is dropped; with padding >= 2 * half it cannot touch
    the record itself.
    """
    n, lp = buf.shape
    c0 = np.rint(centre).astype(np.int64)
    keep = (c0 - half >= 0) & (c0 + half < lp) & (amp != 0)
    rec, centre, amp, sig_l, sig_r, c0 = rec[keep], centre[keep], amp[keep], sig_l[keep], sig_r[keep], c0[keep]
    pos = c0[:, None] + np.arange(-half, half + 1)[None, :]
    d = (pos - centre[:, None]).astype(np.float32)
    if np.array_equal(sig_l, sig_r):
        d /= sig_r[:, None].astype(np.float32)
    else:
        d /= np.where(d < 0, sig_l[:, None], sig_r[:, None]).astype(np.float32)
    vals = np.exp(np.float32(-0.5) * np.square(d))
    vals *= amp[:, None].astype(np.float32)
    flat = (rec[:, None] * lp + pos).ravel()
    buf += np.bincount(flat, weights=vals.ravel(), minlength=n * lp).reshape(n, lp)


def _clean_ecg(rng: np.random.Generator, lab: np.ndarray, beats: dict[str, np.ndarray], fs: float,
               length: int, morph: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Noise-free ECG (mV) [n, length] from the beat times, with per-record and per-beat variation.

    `morph` (from _morphology) projects the waves on the record's lead and widens, turns or scales
    them; without it the draws and the bytes are the standard generator's.
    """
    n = len(lab)
    t, ect = beats["t"], beats["ectopic"]
    has_p = _SINUS[lab][:, None] & ~ect
    pad = int(round(_PAD_S * fs))
    lp = length + 2 * pad
    # per-record morphology (s, mV)
    qrs = _u(rng, *QRS_MS, n)[:, None] / 1000
    pr = _u(rng, _PR_LO[lab], _PR_HI[lab], n)[:, None] / 1000
    a_p, s_p = _u(rng, 0.06, 0.25, (n, 1)), _u(rng, 0.018, 0.026, (n, 1))  # P lasts ~4 sigma
    a_q, a_r, a_s = -_u(rng, 0.0, 0.2, (n, 1)), _u(rng, 0.6, 2.0, (n, 1)), -_u(rng, 0.05, 0.6, (n, 1))
    a_t = _u(rng, 0.08, 0.5, (n, 1))
    s_t = _u(rng, 0.035, 0.055, (n, 1))
    qtc = _u(rng, 0.36, 0.44, (n, 1))
    if morph is not None:
        bbb = morph["bbb"][:, None]
        qrs = np.where(bbb, morph["bbb_qrs"][:, None], qrs)
        qtc = qtc + np.where(bbb, 0.6 * (qrs - 0.09), 0.0)  # the wide QRS lengthens QT
        # the standard amplitudes are lead-II deflections; here they are vector magnitudes, projected
        a_p, a_q, a_r, a_s, a_t = (a_p * morph["P"], -a_q * morph["Q"], a_r * morph["R"], -a_s * morph["S"],
                                   a_t * morph["T"])
    resp_mod = _u(rng, 0.0, 0.12, (n, 1)) * np.sin(2 * np.pi * beats["resp_hz"][:, None] * t
                                                    + beats["resp_phase"][:, None] + 1.0)

    def jitter() -> np.ndarray:  # beat-to-beat amplitude variation
        return 1 + 0.04 * rng.standard_normal(t.shape)

    rr_prev = np.clip(np.diff(t, axis=1, prepend=(t[:, :1] - beats["rr0"][:, None])), 0.25, 2.0)
    st = s_t * np.sqrt(rr_prev)
    t_off = qtc * np.sqrt(rr_prev) - 0.46 * qrs - 2 * 0.7 * st  # QT: QRS onset to T end (+2 sigma)
    # the ectopic (PVC) focus: wide QRS with main deflection of either sign, discordant T
    q_v = _u(rng, *PVC_QRS_MS, (n, 1)) / 1000
    sign = rng.choice([-1.0, 1.0], size=(n, 1), p=[0.4, 0.6])
    a_v = sign * a_r * _u(rng, 1.1, 1.9, (n, 1))
    if morph is not None:  # the ectopic vector: its own direction, always wider than the record's QRS
        a_v = np.abs(a_v) / np.maximum(np.abs(morph["R"]), 1e-9) * morph["PVC"]
        q_v = np.minimum(np.maximum(q_v, DIVERSE["pvc_min_ratio"] * qrs), DIVERSE["pvc_max_ms"] / 1000)
    # onsets: P at its centre - 2 sigma, QRS at Q's centre - 2 sigma = R - 0.46 QRS; PR joins the two
    waves = {  # name: (amplitude, centre (s), sigma left, sigma right)
        "P": (np.where(has_p, a_p * jitter(), 0.0), t - 0.46 * qrs - pr + 2 * s_p, s_p, s_p),
        "Q": (np.where(ect, 0.0, a_q * jitter()), t - 0.3 * qrs, 0.08 * qrs, 0.08 * qrs),
        "R": (np.where(ect, a_v, a_r * (1 + resp_mod)) * jitter(), t, np.where(ect, 0.18 * q_v, 0.12 * qrs),
              np.where(ect, 0.18 * q_v, 0.12 * qrs)),
        "S": (np.where(ect, -0.3 * a_v, a_s) * jitter(), np.where(ect, t + 0.32 * q_v, t + 0.3 * qrs),
              np.where(ect, 0.14 * q_v, 0.09 * qrs), np.where(ect, 0.14 * q_v, 0.09 * qrs)),
        "T": (np.where(ect, -0.35 * a_v, a_t) * jitter(), np.where(ect, t + 0.3 + q_v / 2, t + t_off),
              np.where(ect, 0.075, 1.3 * st), np.where(ect, 0.06, 0.7 * st)),
    }
    if morph is not None:  # bundle-branch block: a notch or slurred terminal deflection, native beats only
        a_n = np.where(morph["bbb"][:, None] & ~ect, morph["notch_amp"] * np.abs(a_r) / np.maximum(
            np.abs(morph["R"]), 1e-9) * morph["notch"], 0.0) * jitter()
        waves["notch"] = (a_n, t + 0.35 * qrs, 0.12 * qrs, 0.12 * qrs)
    buf = np.zeros((n, lp), dtype=np.float64)
    rec = np.broadcast_to(np.arange(n)[:, None], t.shape).ravel()
    for amp, centre, sl, sr in waves.values():
        amp, centre = np.broadcast_to(amp, t.shape), np.broadcast_to(centre, t.shape)
        sl, sr = np.broadcast_to(sl, t.shape) * fs, np.broadcast_to(sr, t.shape) * fs
        half = int(np.ceil(3.5 * max(sl.max(), sr.max())))  # the tail beyond is < 0.3 %
        _scatter(buf, rec, (centre * fs + pad).ravel(), amp.ravel(), sl.ravel(), sr.ravel(), half)
    ecg = buf[:, pad: pad + length]
    params = {"pr_ms": pr[:, 0] * 1000, "qrs_ms": qrs[:, 0] * 1000, "pvc_qrs_ms": q_v[:, 0] * 1000,
              "atrial_rate": np.zeros(n)}
    tt = np.arange(length) / fs
    af = np.flatnonzero(lab == _C["AF"])
    if af.size:  # fibrillatory waves: 4-9 Hz, slowly frequency- and amplitude-modulated, low amplitude
        f0 = _u(rng, *FIB_HZ, (af.size, 1))
        fm = f0 + 0.5 * np.sin(2 * np.pi * _u(rng, 0.05, 0.3, (af.size, 1)) * tt + _u(rng, 0, 6.3, (af.size, 1)))
        phase = 2 * np.pi * np.cumsum(fm, axis=1) / fs + _u(rng, 0, 6.3, (af.size, 1))
        env = _u(rng, 0.03, 0.12, (af.size, 1)) * (1 + 0.3 * np.sin(2 * np.pi * _u(rng, 0.1, 0.5, (af.size, 1)) * tt))
        fwave = env * (np.sin(phase) + _u(rng, 0.1, 0.4, (af.size, 1)) * np.sin(2 * phase + 1.0))
        ecg[af] += fwave if morph is None else fwave * morph["atrial"][af, None]
        params["atrial_rate"][af] = f0[:, 0] * 60
    afl = np.flatnonzero(lab == _C["AFL"])
    if afl.size:  # flutter: sharp upstroke, slow downslope, locked to the conducted QRS complexes
        cyc = 60.0 / beats["flutter"][afl, None]
        delay = _u(rng, 0.16, 0.28, (afl.size, 1))
        phase = 2 * np.pi * (tt - (t[afl, :1] - delay)) / cyc
        saw = sps.sawtooth(phase, width=_u(rng, 0.15, 0.3, (afl.size, 1)))
        saw = _u(rng, 0.08, 0.3, (afl.size, 1)) * saw
        ecg[afl] += saw if morph is None else saw * morph["atrial"][afl, None]
        params["atrial_rate"][afl] = beats["flutter"][afl]
    return ecg, params


def _noise(rng: np.random.Generator, n: int, fs: float, length: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Unit-RMS noise [n, length]: baseline wander, EMG, mains hum (50/60 Hz), electrode motion.

    float32 throughout: the noise needs no more precision and this is most of the generator's time.
    """
    lead = int(fs)  # filter warm-up, cut off
    f32 = np.float32
    tt = (np.arange(length) / fs).astype(f32)

    def u(lo: float, hi: float, size: Any) -> np.ndarray:
        return _u(rng, lo, hi, size).astype(f32)

    bw = sum(u(0.3, 1.0, (n, 1)) * np.sin(f32(2 * np.pi) * u(0.05, 0.6, (n, 1)) * tt + u(0, 6.3, (n, 1)))
             for _ in range(3))
    emg = sps.sosfilt(sps.butter(2, 15, "highpass", fs=fs, output="sos").astype(f32),
                      rng.standard_normal((n, length + lead), dtype=f32), axis=1)[:, lead:]
    burst = np.maximum(0, np.sin(f32(2 * np.pi) * u(0.1, 0.6, (n, 1)) * tt + u(0, 6.3, (n, 1))))
    emg *= 1 + u(0, 2, (n, 1)) * burst * burst
    mains_hz = rng.choice([50.0, 60.0], size=n)
    mains = np.sin(f32(2 * np.pi) * mains_hz[:, None].astype(f32) * tt + u(0, 6.3, (n, 1)))
    em = sps.sosfilt(sps.butter(2, [0.5, 8], "bandpass", fs=fs, output="sos").astype(f32),
                     rng.standard_normal((n, length + lead), dtype=f32), axis=1)[:, lead:]
    centres, widths = u(0, float(tt[-1]), (n, 2)), u(0.3, 1.5, (n, 2))
    em *= np.exp(f32(-0.5) * np.square((tt[None, None, :] - centres[..., None]) / widths[..., None])).sum(axis=1)
    present = np.stack([rng.uniform(size=n) < p for p in (0.85, 0.8, 0.45, 0.35)], axis=1)
    present[~present.any(axis=1), 1] = True
    weights = (present * _u(rng, 0.3, 1.0, (n, 4)) * np.array([2.0, 1.0, 0.5, 1.5])).astype(f32)
    total = np.zeros((n, length), dtype=f32)
    for j, comp in enumerate((bw, emg, mains, em)):
        rms = np.sqrt(np.mean(np.square(comp), axis=1, keepdims=True))
        total += (weights[:, j: j + 1] / np.maximum(rms, f32(1e-12))) * comp
    total /= np.maximum(np.sqrt(np.mean(np.square(total), axis=1, keepdims=True)), f32(1e-12))
    names = np.array(["baseline", "emg", "mains", "motion"])
    return total, {"mains_hz": np.where(present[:, 2], mains_hz, 0), "present": present, "names": names}


def _noise_diverse(rng: np.random.Generator, n: int, fs: float, length: int, resp_hz: np.ndarray,
                   ref_rms: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Noise (mV) [n, length] of `--morphology diverse`: each component drawn present or not and mixed at
    its own SNR (DIVERSE["noise"], dB against `ref_rms`, the clean record's RMS at normal voltage, so
    low-voltage records come out noisier). Shapes follow the MIT-BIH Noise Stress Test's kinds:

    - baseline wander: respiration (the record's own breathing rate) plus two slower drifts;
    - EMG: white noise high-passed at 20 Hz, in bursts;
    - mains: 50 or 60 Hz, slowly amplitude-modulated;
    - electrode motion: 1-3 baseline steps, each decaying as the amplifier's high-pass recovers
      (time constant 0.3-2 s), with a 0.5-8 Hz transient at the step.
    """
    lead = int(fs)
    f32 = np.float32
    tt = (np.arange(length) / fs).astype(f32)

    def u(lo: float, hi: float, size: Any) -> np.ndarray:
        return _u(rng, lo, hi, size).astype(f32)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.sqrt(np.mean(np.square(x), axis=1, keepdims=True)), f32(1e-12))

    bw = u(0.5, 1.0, (n, 1)) * np.sin(f32(2 * np.pi) * resp_hz[:, None].astype(f32) * tt + u(0, 6.3, (n, 1)))
    bw += sum(u(0.3, 1.0, (n, 1)) * np.sin(f32(2 * np.pi) * u(0.03, 0.15, (n, 1)) * tt + u(0, 6.3, (n, 1)))
              for _ in range(2))
    emg = sps.sosfilt(sps.butter(4, 20, "highpass", fs=fs, output="sos").astype(f32),
                      rng.standard_normal((n, length + lead), dtype=f32), axis=1)[:, lead:]
    burst = np.maximum(0, np.sin(f32(2 * np.pi) * u(0.1, 0.6, (n, 1)) * tt + u(0, 6.3, (n, 1))))
    emg *= 1 + u(0, 3, (n, 1)) * burst * burst
    mains_hz = rng.choice([50.0, 60.0], size=n)
    mains = (1 + u(0, 0.3, (n, 1)) * np.sin(f32(2 * np.pi) * u(0.05, 0.5, (n, 1)) * tt)) * np.sin(
        f32(2 * np.pi) * mains_hz[:, None].astype(f32) * tt + u(0, 6.3, (n, 1)))
    k = 3  # electrode-motion events per record (1-3 used)
    at = u(0, float(tt[-1]), (n, k))
    used = np.arange(k)[None, :] < rng.integers(1, k + 1, (n, 1))
    since = tt[None, None, :] - at[..., None]
    step = np.where(since >= 0, np.exp(-np.maximum(since, 0) / u(0.3, 2.0, (n, k))[..., None]), f32(0))
    step *= (u(-1, 1, (n, k)) * used)[..., None]
    trans = sps.sosfilt(sps.butter(2, [0.5, 8], "bandpass", fs=fs, output="sos").astype(f32),
                        rng.standard_normal((n, length + lead), dtype=f32), axis=1)[:, lead:]
    gate = (np.exp(f32(-0.5) * np.square(since / u(0.1, 0.5, (n, k))[..., None])) * used[..., None]).sum(axis=1)
    motion = step.sum(axis=1) + 0.3 * unit(trans) * gate
    names = list(DIVERSE["noise"])
    present = np.stack([rng.uniform(size=n) < DIVERSE["noise"][c][0] for c in names], axis=1)
    snr = np.stack([_u(rng, *DIVERSE["noise"][c][1], n) for c in names], axis=1)
    total = np.zeros((n, length), dtype=f32)
    for j, comp in enumerate((bw, emg, mains, motion)):
        scale = np.where(present[:, j], ref_rms / 10 ** (snr[:, j] / 20), 0.0).astype(f32)
        total += scale[:, None] * unit(comp)
    noise_rms = np.sqrt(np.mean(np.square(total, dtype=np.float64), axis=1))
    snr_total = 20 * np.log10(np.maximum(ref_rms, 1e-12) / np.maximum(noise_rms, 1e-12))
    return total, {"mains_hz": np.where(present[:, 2], mains_hz, 0), "present": present, "names": np.array(names),
                   "snr_db": np.where(present.any(axis=1), snr_total, np.inf)}


def _block(seed_seq: np.random.SeedSequence, lab: np.ndarray, first_id: int, fs: float, seconds: float,
           noise: bool, morphology: str = "standard", lead: str = "II") -> tuple[np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed_seq)
    length = int(round(fs * seconds))
    beats = _beat_times(rng, lab, seconds)
    n = len(lab)
    morph = None
    if morphology == "diverse":  # its own stream: the standard draws above stay as they are
        rng_m = np.random.default_rng(np.random.SeedSequence(seed_seq.entropy, spawn_key=(*seed_seq.spawn_key, 9)))
        morph = _morphology(rng_m, n, lead)
    ecg, params = _clean_ecg(rng, lab, beats, fs, length, morph)
    snr = _u(rng, *SNR_DB, n)
    if morph is not None:
        ref = ecg.std(axis=1)
        ecg = ecg * morph["gain"][:, None]
        if noise:
            nz, ninfo = _noise_diverse(rng_m, n, fs, length, beats["resp_hz"], ref)
            ecg = ecg + nz
            snr = ninfo["snr_db"]
    elif noise:
        nz, ninfo = _noise(rng, n, fs, length)
        ecg = ecg + nz * (ecg.std(axis=1) / 10 ** (snr / 20))[:, None].astype(np.float32)
    lo, hi = ecg.min(axis=1, keepdims=True), ecg.max(axis=1, keepdims=True)
    out = ((ecg - lo) / np.maximum(hi - lo, 1e-12)).astype(np.float32)
    records = []
    sinus = _SINUS[lab]
    for i in range(n):
        c = int(lab[i])
        records.append({
            "record_id": f"synth_{first_id + i:06d}", "patient_id": f"synth_{first_id + i:06d}",
            "label": DEFAULT_CLASSES[c],
            "heart_rate_bpm": round(float(beats["hr"][i]), 1),
            "snr_db": round(float(snr[i]), 1) if noise else None,
            "pr_ms": round(float(params["pr_ms"][i])) if sinus[i] else None,
            "qrs_ms": round(float(params["qrs_ms"][i])),
            "n_pvc": int(beats["n_pvc"][i]),
            "pvc_qrs_ms": round(float(params["pvc_qrs_ms"][i])) if beats["n_pvc"][i] else None,
            "atrial_rate_per_min": round(float(params["atrial_rate"][i])) if not sinus[i] else None,
            "conduction": _CONDUCTION[beats["cond"][i]] if c == _C["AFL"] else None,
            "mains_hz": int(ninfo["mains_hz"][i]) if noise else None,
            "noise": "+".join(ninfo["names"][ninfo["present"][i]]) if noise else "none",
        })
        if morph is not None:
            records[-1].update({
                "snr_db": (round(float(snr[i]), 1) if np.isfinite(snr[i]) else None) if noise else None,
                "noise": records[-1]["noise"] or "none",
                "lead": str(morph["lead"][i]), "qrs_axis_deg": round(float(morph["axis"][i])),
                "bundle_branch_block": bool(morph["bbb"][i]), "t_inverted": bool(morph["t_inverted"][i]),
                "low_voltage": bool(morph["low_voltage"][i])})
    return out[:, None, :], records


def synthesize(per_class: int | None = None, total: int | None = None, balance: str = "paper", seed: int = 0,
               fs: float = FS, seconds: float = SECONDS, noise: bool = True,
               progress: Callable[[int], None] | None = None, morphology: str = "standard",
               lead: str = "II") -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Synthetic lead-II ECGs: (signals float32 [N, 1, fs*seconds] in [0, 1], labels int64 [N], records).

    Labels index DEFAULT_CLASSES. `noise=False` gives clean records (for measuring the physiology).
    `progress(k)` is called after each block of k records. The same arguments give identical bytes.
    `morphology="diverse"` draws each record's QRS axis and width (bundle-branch-like wide QRS in any
    rhythm), T inversion and low voltage, projects the waves on `lead` (a limb lead, or "random": one
    per record) and mixes noise at per-component SNRs (DIVERSE); "standard" is the original generator.
    """
    counts = class_counts(per_class, total, balance)
    if fs < 100:  # QRS detail needs >= 100 Hz
        raise ValueError(f"fs must be >= 100 Hz, got {fs}")
    check_morphology(morphology, lead)
    labels = np.repeat(np.arange(len(counts)), counts)
    labels = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0,))).permutation(labels)
    blocks = range(0, len(labels), _BLOCK)
    seeds = np.random.SeedSequence(int(seed), spawn_key=(1,)).spawn(len(blocks))
    sigs, records = [], []
    for b, start in enumerate(blocks):
        s, r = _block(seeds[b], labels[start: start + _BLOCK], start, fs, seconds, noise, morphology, lead)
        sigs.append(s)
        records.extend(r)
        if progress is not None:
            progress(len(r))
    length = int(round(fs * seconds))
    signals = np.concatenate(sigs) if sigs else np.zeros((0, 1, length), np.float32)
    return signals, labels.astype(np.int64), records


def check_morphology(morphology: str, lead: str) -> None:
    """ValueError unless `morphology` is known and `lead` fits it (only "diverse" projects on other leads)."""
    if morphology not in MORPHOLOGIES:
        raise ValueError(f"morphology must be one of {', '.join(MORPHOLOGIES)}, got {morphology!r}")
    if lead not in LEADS:
        raise ValueError(f"lead must be one of {', '.join(LEADS)}, got {lead!r}")
    if morphology == "standard" and lead != "II":
        raise ValueError(f"lead {lead} needs morphology 'diverse' (the standard generator draws lead II only)")


def check_request(out: str | os.PathLike, per_class: int | None = None, total: int | None = None,
                  balance: str = "paper", overwrite: bool = False, morphology: str = "standard",
                  lead: str = "II") -> np.ndarray:
    """Validate an output folder and a size request before any work; the class counts, or BadInput."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BadInput(f"{out}: output folder exists and is not empty (use --overwrite to replace it)")
    try:
        counts = class_counts(per_class, total, balance)
        check_morphology(morphology, lead)
    except ValueError as exc:
        raise BadInput(f"{out}: {exc}") from None
    if counts.min() < MIN_PER_CLASS:
        small = DEFAULT_CLASSES[int(np.argmin(counts))]
        raise BadInput(f"{out}: {small} would get {counts.min()} records; every class needs at least "
                       f"{MIN_PER_CLASS} for a train/val/test split (raise --total or --per-class)")
    return counts


def write_synthetic_dataset(out: str | os.PathLike, per_class: int | None = None, total: int | None = None,
                            balance: str = "paper", seed: int = 0, overwrite: bool = False,
                            progress: Callable[[int], None] | None = None, morphology: str = "standard",
                            lead: str = "II") -> Path:
    """Generate a synthetic set, split it 64/16/20 (stratified, seeded) and write a prepared dataset.

    `morphology` and `lead` as in synthesize(); the standard morphology's files are unchanged by them.

    Each file is recorded in the run's manifest.json (the dataset folder's own, unless it sits in a run).
    """
    from ecgtool.core.manifest import current_command, record_artifact
    from ecgtool.data.dataset import write_dataset
    from ecgtool.data.splits import random_split

    out = Path(out)
    counts = check_request(out, per_class, total, balance, overwrite, morphology, lead)
    signals, labels, records = synthesize(per_class, total, balance, seed, progress=progress,
                                          morphology=morphology, lead=lead)
    meta = {
        "source": "synthetic", "sampling_rate": FS, "seconds": SECONDS, "lead": "II",
        "preprocessing": "min-max per record to [0,1]", "split": "random", "seed": int(seed),
        "generator": {
            "name": "ecgtool.data.synth", "version": GENERATOR_VERSION,
            "model": "sum of Gaussians P,Q,R,S,T per beat (ECGSYN spirit) on rhythm-specific beat times",
            "balance": "per_class" if per_class is not None else balance,
            "per_class": per_class, "total": int(counts.sum()),
            "heart_rate_bpm": HEART_RATE_BPM, "pr_ms": PR_MS, "qrs_ms": QRS_MS, "pvc_qrs_ms": PVC_QRS_MS,
            "flutter_per_min": FLUTTER_PER_MIN, "fibrillatory_hz": [4.0, 9.0], "snr_db": SNR_DB,
            "noise": ["baseline wander", "EMG", "mains 50/60 Hz", "electrode motion"],
        },
    }
    if morphology == "diverse":
        g = meta["generator"]
        g.update(version=DIVERSE_VERSION, morphology="diverse", lead=lead, diverse=DIVERSE, snr_db=None,
                 model=g["model"] + "; frontal-plane dipole projected on the record's limb lead, wide QRS, "
                 "T inversion, low voltage; noise per component at its own SNR")
        g["noise"] = ["baseline wander (respiration + drift)", "EMG bursts", "mains 50/60 Hz",
                      "electrode-motion steps"]
        meta["lead"] = lead if lead != "random" else "random limb lead per record (records.csv: lead)"
    write_dataset(out, signals, labels, DEFAULT_CLASSES, records, random_split(labels, seed), meta,
                  overwrite=overwrite)
    cmd = current_command()
    for name in ("signals.npy", "labels.npy", "records.csv", "splits.json", "meta.json"):
        record_artifact(out / name, command=cmd)
    return out


@click.command("synth")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--per-class", type=int, help="Records per class (all classes equal).")
@click.option("--total", type=int, help=f"Total records, split by --balance (default {DEFAULT_TOTAL}).")
@click.option("--balance", type=click.Choice(["paper", "equal"]), help="Class shares for --total (default paper).")
@click.option("--seed", type=int, help="Random seed (default 0); same seed, same bytes.")
@click.option("--morphology", type=click.Choice(MORPHOLOGIES), default="standard", show_default=True,
              help="diverse: per-record QRS axis and width (bundle-branch-like wide QRS in any rhythm), T inversion, "
                   "low voltage, lead projection and noise at per-component SNRs.")
@click.option("--lead", type=click.Choice(LEADS), default="II", show_default=True,
              help="Limb lead the dipole is projected on, or random (one per record); needs --morphology diverse.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@quiet_option
def synth_command(out: str, per_class: int | None, total: int | None, balance: str | None, seed: int | None,
                  morphology: str, lead: str, overwrite: bool) -> None:
    """Write a synthetic prepared dataset of 10-s lead-II ECGs (200 Hz) for the seven rhythm classes."""
    from ecgtool.core import ui

    if per_class is not None and total is not None:
        raise BadInput(f"{out}: give --per-class or --total, not both")
    if per_class is not None and balance is not None:
        raise BadInput(f"{out}: --balance applies to --total; --per-class already gives equal counts")
    opts = {k: v for k, v in dict(per_class=per_class, total=total, balance=balance, seed=seed).items()
            if v is not None}
    if morphology != "standard" or lead != "II":
        opts.update(morphology=morphology, lead=lead)
    counts = check_request(out, overwrite=overwrite, **{k: v for k, v in opts.items() if k != "seed"})
    n = int(counts.sum())
    with ui.progress_bar("synthesising ECGs", n) as bar:
        path = write_synthetic_dataset(out, overwrite=overwrite, progress=bar.advance, **opts)
    per = ", ".join(f"{c} {k}" for c, k in zip(DEFAULT_CLASSES, counts.tolist()))
    click.echo(f"{n} records ({per}) -> {path}")
