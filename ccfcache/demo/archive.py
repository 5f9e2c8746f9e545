"""Generate a deterministic synthetic XMM-Newton CCF archive (full and valid sets) with a manifest.

The archive mimics ESA's: every constituent is a real FITS file (empty primary HDU carrying the
indexing keywords, long CONTINUE strings and HISTORY; one binary table per EXTSEQID name) named
`SCOPE_TYPEID_IIII.CCF`. The 121 calibration types of a real CIF are the catalogue; sizes are the
real sizes divided by `scale`. The same seed, scale and version give byte-identical files.

Special cases, always present (their names are in `Manifest.cases`):
- XRT3 XAREAEF: issue 12 has an earlier VALDATE than issue 11 (highest issue still wins);
  issue 12 is modified in place in version 2 (later SUBDATE, one more XDAL/HISTORY, new size).
- EMOS1/EMOS2 REDIST and EPN CTI are time-sliced (EVALDATE), with the real incident shape:
  an issue with a too-early EVALDATE, fixed by the next issue; meanwhile an older open-ended
  issue is selected.
- A few types have an extra highest issue with CATEGORY 'SCISIMCCF'.
- Version 2 adds one issue (EMOS1 ADUCONV) and withdraws one (the top issue of EMOS1 BADPIX).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import zlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from astropy.io import fits

BLOCK = 2880
MIN_SIZE = 3 * BLOCK
FAR_FUTURE = "2999-12-31T23:59:59"

_CATALOGUE_ROWS: tuple[tuple[str, str, int, int, str], ...] = (
    ("EMOS1", "ADUCONV", 111, 25920, "ADUCOEFF OFFSET_GAIN ENERGY_COMBINE"),
    ("EMOS1", "BACKGROUND", 1, 34560, "PARTICLE X_RAY_DIFFUSE X_RAY_DIFFUSE_MODULATION"),
    ("EMOS1", "BADPIX", 39, 25920, "BADPIX"),
    ("EMOS1", "CALSOURCEDATA", 1, 8640, "CALSOURCEREGIONS"),
    ("EMOS1", "CONTAMINATION", 1, 83520, "CONTAM_DEPTH"),
    ("EMOS1", "CTI", 99, 138240, "CTI CTI_EXTENDED CTI_COLUMN"),
    ("EMOS1", "DARKFRAME", 37, 5247360,
        "OFFSET_CCD1 OFFSET_CCD2 OFFSET_CCD3 OFFSET_CCD4 OFFSET_CCD5 OFFSET_CCD6 OFFSET_CCD7 "
        "DARKFRAME_CCD1 DARKFRAME_CCD2 DARKFRAME_CCD3 DARKFRAME_CCD4 DARKFRAME_CCD5 "
        "DARKFRAME_CCD6 DARKFRAME_CCD7"),
    ("EMOS1", "EFFICIENCY", 1, 8640, "EFFICIENCY"),
    ("EMOS1", "FILTERTRANSX", 15, 155520,
        "FILTER-THIN1 FILTER-THIN2 FILTER-MEDIUM FILTER-THICK FILTER-OPEN FILTER-CLOSED "
        "FILTER-CALTHIN1 FILTER-CALTHIN2 FILTER-CALMEDIUM FILTER-CALTHICK FILTER-CALOPEN "
        "FILTER-CALCLOSED EBINS"),
    ("EMOS1", "FWC", 3, 227681280, "EVENTS EXPTIME"),
    ("EMOS1", "HKPARMINT", 10, 23040, "HKPARMINT TRANSLATION AUXPAR"),
    ("EMOS1", "LINCOORD", 18, 28800, "LINCOORD FOV CORNER"),
    ("EMOS1", "MODEPARAM", 6, 11520, "MODEPARAM"),
    ("EMOS1", "PATTERNLIB", 5, 54720,
        "PrimeFullWindow PrimePartialW2 PrimePartialW3 PrimePartialW4 PrimePartialW5 "
        "PrimePartialW6 PrimePartialRFS FastUncompressed FastCompressed"),
    ("EMOS1", "QUANTUMEF", 21, 2750400,
        "QE_CCD1 QE_CCD2 QE_CCD3 QE_CCD4 QE_CCD5 QE_CCD6 QE_CCD7 EBINS FRACTION_CHANNEL "
        "FRACTION_ENERGY QE_TOTAL EBINS_FRACTION CHBINS_FRACTION"),
    ("EMOS1", "REDIST", 120, 178560,
        "CCD_REDISTRIBUTION-1 CCD_REDISTRIBUTION-2 CCD_REDISTRIBUTION-3 CCD_REDISTRIBUTION-4 "
        "CCD_REDISTRIBUTION-5 CCD_REDISTRIBUTION-6 CCD_REDISTRIBUTION-7 PHA_EBOUNDS "
        "BINNEDPI_EBOUNDS EBINS"),
    ("EMOS1", "SCREENTHRESH", 1, 11520, "SCREEN_THRESH"),
    ("EMOS1", "TIMECORR", 3, 8640, "FRAMETIME"),
    ("EMOS2", "ADUCONV", 115, 25920, "ADUCOEFF OFFSET_GAIN ENERGY_COMBINE"),
    ("EMOS2", "BACKGROUND", 1, 34560, "PARTICLE X_RAY_DIFFUSE X_RAY_DIFFUSE_MODULATION"),
    ("EMOS2", "BADPIX", 26, 11520, "BADPIX"),
    ("EMOS2", "CALSOURCEDATA", 1, 8640, "CALSOURCEREGIONS"),
    ("EMOS2", "CONTAMINATION", 1, 83520, "CONTAM_DEPTH"),
    ("EMOS2", "CTI", 103, 195840, "CTI CTI_EXTENDED CTI_COLUMN"),
    ("EMOS2", "DARKFRAME", 33, 5247360,
        "OFFSET_CCD1 OFFSET_CCD2 OFFSET_CCD3 OFFSET_CCD4 OFFSET_CCD5 OFFSET_CCD6 OFFSET_CCD7 "
        "DARKFRAME_CCD1 DARKFRAME_CCD2 DARKFRAME_CCD3 DARKFRAME_CCD4 DARKFRAME_CCD5 "
        "DARKFRAME_CCD6 DARKFRAME_CCD7"),
    ("EMOS2", "EFFICIENCY", 1, 8640, "EFFICIENCY"),
    ("EMOS2", "FILTERTRANSX", 15, 155520,
        "FILTER-THIN1 FILTER-THIN2 FILTER-MEDIUM FILTER-THICK FILTER-OPEN FILTER-CLOSED "
        "FILTER-CALTHIN1 FILTER-CALTHIN2 FILTER-CALMEDIUM FILTER-CALTHICK FILTER-CALOPEN "
        "FILTER-CALCLOSED EBINS"),
    ("EMOS2", "FWC", 3, 258724800, "EVENTS EXPTIME"),
    ("EMOS2", "HKPARMINT", 9, 28800, "HKPARMINT TRANSLATION AUXPAR"),
    ("EMOS2", "LINCOORD", 18, 28800, "LINCOORD FOV CORNER"),
    ("EMOS2", "MODEPARAM", 6, 11520, "MODEPARAM"),
    ("EMOS2", "PATTERNLIB", 5, 54720,
        "PrimeFullWindow PrimePartialW2 PrimePartialW3 PrimePartialW4 PrimePartialW5 "
        "PrimePartialW6 PrimePartialRFS FastUncompressed FastCompressed"),
    ("EMOS2", "QUANTUMEF", 21, 2750400,
        "QE_CCD1 QE_CCD2 QE_CCD3 QE_CCD4 QE_CCD5 QE_CCD6 QE_CCD7 EBINS FRACTION_CHANNEL "
        "FRACTION_ENERGY QE_TOTAL EBINS_FRACTION CHBINS_FRACTION"),
    ("EMOS2", "REDIST", 120, 178560,
        "CCD_REDISTRIBUTION-1 CCD_REDISTRIBUTION-2 CCD_REDISTRIBUTION-3 CCD_REDISTRIBUTION-4 "
        "CCD_REDISTRIBUTION-5 CCD_REDISTRIBUTION-6 CCD_REDISTRIBUTION-7 PHA_EBOUNDS "
        "BINNEDPI_EBOUNDS EBINS"),
    ("EMOS2", "SCREENTHRESH", 1, 11520, "SCREEN_THRESH"),
    ("EMOS2", "TIMECORR", 3, 8640, "FRAMETIME"),
    ("EPN", "ADUCONV", 142, 72000, "ADUCOEFF OFFSET_GAIN GAIN-HIGH REEMISSION REEMISSION1"),
    ("EPN", "BACKGROUND", 1, 34560, "PARTICLE X_RAY_DIFFUSE X_RAY_DIFFUSE_MODULATION"),
    ("EPN", "BADPIX", 145, 31680, "BADPIX"),
    ("EPN", "BUCLOSEDODI", 5, 60480, "MASTER_CLOSED_OFFSET"),
    ("EPN", "CALSOURCEDATA", 1, 8640, "CALSOURCEREGIONS"),
    ("EPN", "CTI", 54, 3922560,
        "CTI CTI_EXTENDED HOT_PIXELS DISCARDED_PIXELS CTI-HIGH CTI-HIGH_ADD_PAR CCD_OFFSETS "
        "TEMP_CTI ORSAY_GAIN LONG_TERM_CTI LTC_TIMES TIMING_GAIN BURST_GAIN EFF_GAIN "
        "QBOXTEMP_GAIN RATE_DEPENDENT_CTI SPATIAL_CTI RDPHA_DERIV RDPHA_BURST NDSCLIN_GAIN "
        "COMB_EVT_OFFSET"),
    ("EPN", "DARKFRAME", 1, 659520,
        "DARKFRAME-1 DARKFRAME-2 DARKFRAME-3 DARKFRAME-4 DARKFRAME-5 DARKFRAME-6 DARKFRAME-7 "
        "DARKFRAME-8 DARKFRAME-9 DARKFRAME-10 DARKFRAME-11 DARKFRAME-12"),
    ("EPN", "EFFICIENCY", 1, 8640, "EFFICIENCY"),
    ("EPN", "FILTERTRANSX", 19, 155520,
        "FILTER-THIN1 FILTER-THIN2 FILTER-MEDIUM FILTER-THICK FILTER-OPEN FILTER-CLOSED "
        "FILTER-CALTHIN1 FILTER-CALTHIN2 FILTER-CALMEDIUM FILTER-CALTHICK FILTER-CALOPEN "
        "FILTER-CALCLOSED EBINS"),
    ("EPN", "FWC", 3, 565931520, "EVENTS EXPTIME DLCOEFF"),
    ("EPN", "HKPARMINT", 5, 23040, "HKPARMINT TRANSLATION AUXPAR"),
    ("EPN", "LINCOORD", 9, 23040, "LINCOORD FOV"),
    ("EPN", "MODEPARAM", 3, 11520, "MODEPARAM"),
    ("EPN", "PATTERNLIB", 1, 37440,
        "PrimeFullWindow PrimeFullWindowExtended PrimeLargeWindow PrimeSmallWindow FastTiming "
        "FastBurst"),
    ("EPN", "QUANTUMEF", 18, 5207040,
        "QE_CCD4 QE_CCD5 QE_CCD6 QE_CCD1 QE_CCD7 QE_CCD10 QE_CCD2 QE_CCD11 QE_CCD8 QE_CCD3 "
        "QE_CCD12 QE_CCD9 EBINS FRACTION_CHANNEL FRACTION_ENERGY QE_TOTAL EBINS_FRACTION "
        "CHBINS_FRACTION"),
    ("EPN", "REDIST", 12, 322560,
        "EBOUNDS PHA_EBOUNDS BINNEDPI_EBOUNDS EBINS ABSORPTION NOISE_PARAMS PARTEVENT_PARAMS "
        "THRESH_LOSS"),
    ("EPN", "REJECT", 8, 3386880,
        "NOISE_MAP_INDEX MEDIAN_MAP_INDEX MASTER_OFFSET_TABLE_INDEX CORRECTION_VALUES "
        "NOISE_MAP_FF_01_00 NOISE_MAP_FF_02_00 NOISE_MAP_FF_03_00 NOISE_MAP_FF_04_00 "
        "NOISE_MAP_FF_05_00 NOISE_MAP_FF_06_00 NOISE_MAP_FF_07_00 NOISE_MAP_FF_08_00 "
        "NOISE_MAP_FF_09_00 NOISE_MA"),
    ("EPN", "TICLOSEDODI", 13, 60480, "MASTER_CLOSED_OFFSET"),
    ("EPN", "TIMECORR", 11, 17280, "FRAMETIME TIMECORR"),
    ("EPN", "TIMEJUMPTOL", 1, 11520, "TIMEJUMPTOL"),
    ("OM", "ASTROMET", 12, 2479680,
        "FILTER-U FILTER-B FILTER-V FILTER-UVW1 FILTER-UVW2 FILTER-UVM2 FILTER-WHITE FILTER- "
        "MAGNI FILTER-GRISM1 FILTER-GRISM2 FILTER-GRISM10 FILTER-GRISM20 POLYNOM_MAP "
        "POLYNOM_MAP2"),
    ("OM", "BADPIX", 8, 411840, "BADPIX"),
    ("OM", "COLORTRANS", 10, 14400, "COLORMAG"),
    ("OM", "DARKFRAME", 3, 16784640, "DARKFRAME"),
    ("OM", "DIFFUSEGALA", 1, 20160, "DGL_MAP DGL_SPEC DGL_COUNTS"),
    ("OM", "GRISMCAL", 6, 46080,
        "FLUX_GRISM1 FLUX_GRISM2 WAVELENGTH_GRISM1 WAVELENGTH_GRISM2 TDS_CORR"),
    ("OM", "HKPARMINT", 4, 17280, "HKPARMINT TRANSLATION"),
    ("OM", "LARGESCALESENS", 2, 463680,
        "FILTER-U FILTER-B FILTER-V FILTER-UVW1 FILTER-UVW2 FILTER-UVM2 FILTER-WHITE FILTER- "
        "MAGNI FILTER-GRISM1 FILTER-GRISM2"),
    ("OM", "LINCOORD", 1, 14400, "LINCOORD"),
    ("OM", "PHOTTONAT", 8, 23040, "PHOTTONAT COINCIDENCE DEGRADATION"),
    ("OM", "PIXTOPIXSENS", 3, 33566400, "PIXTOPIXSENS LEDTEMPLATE"),
    ("OM", "PSF1DRB", 10, 51840,
        "PSF-U PSF-B PSF-V PSF-UVW1 PSF-UVM2 PSF-UVW2 PSF-WHITE PSF-MAGNI"),
    ("OM", "QUICKMAG", 2, 72000,
        "FILTER-U FILTER-V FILTER-B FILTER-UVW1 FILTER-UVW2 FILTER-UVM2 FILTER-WHITE FILTER- "
        "MAGNI FILTER-GRISM1 FILTER-GRISM2 FILTER-GRISM11 FILTER-GRISM21"),
    ("OM", "ZODIACAL", 1, 20160, "ZODICAL_MAP ZODICAL_SPEC ZODIACAL_COUNTS"),
    ("RGS1", "ADUCONV", 29, 20160, "ADUCOEFF OFFSET_GAIN"),
    ("RGS1", "BACKGROUND", 1, 8640, "PARTICLE"),
    ("RGS1", "BADPIX", 39, 17280, "BADPIX BADPIX1"),
    ("RGS1", "CALSOURCEDATA", 1, 8640, "CALSOURCEREGIONS"),
    ("RGS1", "CLOCKPATTERNS", 1, 11520, "ClockPatterns"),
    ("RGS1", "COOLPIX", 1, 14400, "COOLPIX"),
    ("RGS1", "CROSSPSF", 4, 17280, "CROSSPSF"),
    ("RGS1", "CTI", 15, 74880,
        "CTI CTI_EXTENDED XCTI CTIY1 CTIY2 CTIY3 CTIY4 CTIY5 CTIY6 CTIY7 CTIY8 CTIY9"),
    ("RGS1", "DARKFRAME", 5, 14400, "DARKFRAME"),
    ("RGS1", "EFFAREACORR", 14, 757440, "EFFAREACORR RECTIFICATION AREACORR_1 AREACORR_2"),
    ("RGS1", "EXAFS", 5, 112320,
        "H2O-P-CCD1 H2O-P-CCD2 H2O-P-CCD3 H2O-P-CCD4 H2O-P-CCD5 H2O-P-CCD6 H2O-P-CCD7 H2O-P- "
        "CCD8 H2O-P-CCD9 MgF2-P-CCD1 MgF2-P-CCD2 MgF2-P-CCD3 MgF2-P-CCD4 MgF2-P-CCD5 "
        "MgF2-P-CCD6 MgF2-P-CCD7 MgF2-P-CCD8 MgF2-P-CCD9"),
    ("RGS1", "HKPARMINT", 15, 28800, "HKPARMINT TRANSLATION AUXPAR"),
    ("RGS1", "LINCOORD", 8, 14400, "LINCOORD"),
    ("RGS1", "LINESPREADFUNC", 5, 28800, "FIGURE SCATTER LASCAT BOWS"),
    ("RGS1", "MODEPARAM", 5, 8640, "MODEPARAM"),
    ("RGS1", "QUANTUMEF", 15, 135360,
        "CCD_DESC SI1 SI2 SI3 SI4 SI5 SI6 SI7 SI8 SI9 RGA_EFF RGA_INTERCEPT RGA_OBSCURATE "
        "RGA_EFFCORR RGA_SELFVIGNCORR RGA_EFFAREACORR"),
    ("RGS1", "REDIST", 4, 54720, "EBOUNDS CCD_REDISTRIBUTION"),
    ("RGS1", "SAACORR", 1, 11520, "SAACORR"),
    ("RGS1", "TEMPLATEBCKGND", 6, 7565760,
        "X100_P090_1_0.00_B X100_P090_1_0.01_B X100_P090_1_0.02_B X100_P090_1_0.04_B "
        "X100_P090_1_0.06_B X100_P090_1_0.08_B X100_P090_1_0.10_B X100_P090_1_0.20_B "
        "X100_P090_1_0.40_B X100_P090_1_0.60_B X100_P090_1_0.80_B X100_P090_1_1.00_B "
        "X100_P090_1_2.00_B X100_P090"),
    ("RGS2", "ADUCONV", 34, 20160, "ADUCOEFF OFFSET_GAIN"),
    ("RGS2", "BACKGROUND", 1, 8640, "PARTICLE"),
    ("RGS2", "BADPIX", 32, 17280, "BADPIX BADPIX1"),
    ("RGS2", "CALSOURCEDATA", 1, 8640, "CALSOURCEREGIONS"),
    ("RGS2", "CLOCKPATTERNS", 1, 11520, "ClockPatterns"),
    ("RGS2", "COOLPIX", 1, 14400, "COOLPIX"),
    ("RGS2", "CROSSPSF", 4, 17280, "CROSSPSF"),
    ("RGS2", "CTI", 16, 74880,
        "CTI CTI_EXTENDED XCTI CTIY1 CTIY2 CTIY3 CTIY4 CTIY5 CTIY6 CTIY7 CTIY8 CTIY9"),
    ("RGS2", "DARKFRAME", 6, 14400, "DARKFRAME"),
    ("RGS2", "EFFAREACORR", 14, 757440, "EFFAREACORR RECTIFICATION AREACORR_1 AREACORR_2"),
    ("RGS2", "EXAFS", 5, 112320,
        "H2O-P-CCD1 H2O-P-CCD2 H2O-P-CCD3 H2O-P-CCD4 H2O-P-CCD5 H2O-P-CCD6 H2O-P-CCD7 H2O-P- "
        "CCD8 H2O-P-CCD9 MgF2-P-CCD1 MgF2-P-CCD2 MgF2-P-CCD3 MgF2-P-CCD4 MgF2-P-CCD5 "
        "MgF2-P-CCD6 MgF2-P-CCD7 MgF2-P-CCD8 MgF2-P-CCD9"),
    ("RGS2", "HKPARMINT", 14, 28800, "HKPARMINT TRANSLATION AUXPAR"),
    ("RGS2", "LINCOORD", 8, 14400, "LINCOORD"),
    ("RGS2", "LINESPREADFUNC", 5, 28800, "FIGURE SCATTER LASCAT BOWS"),
    ("RGS2", "MODEPARAM", 5, 8640, "MODEPARAM"),
    ("RGS2", "QUANTUMEF", 16, 135360,
        "CCD_DESC SI1 SI2 SI3 SI4 SI5 SI6 SI7 SI8 SI9 RGA_EFF RGA_INTERCEPT RGA_OBSCURATE "
        "RGA_EFFCORR RGA_SELFVIGNCORR RGA_EFFAREACORR"),
    ("RGS2", "REDIST", 4, 54720, "EBOUNDS CCD_REDISTRIBUTION"),
    ("RGS2", "SAACORR", 1, 11520, "SAACORR"),
    ("RGS2", "TEMPLATEBCKGND", 8, 7565760,
        "X100_P090_1_0.00_B X100_P090_1_0.01_B X100_P090_1_0.02_B X100_P090_1_0.04_B "
        "X100_P090_1_0.06_B X100_P090_1_0.08_B X100_P090_1_0.10_B X100_P090_1_0.20_B "
        "X100_P090_1_0.40_B X100_P090_1_0.60_B X100_P090_1_0.80_B X100_P090_1_1.00_B "
        "X100_P090_1_2.00_B X100_P090"),
    ("XMM", "ABSCOEFS", 4, 80640,
        "HENKE-Si HENKE-Al HENKE-Mg HENKE-F HENKE-O HENKE-C ATOMIC_PROPERTIES"),
    ("XMM", "BORESIGHT", 31, 593280,
        "BORESIGHT OM_ANGVAR EMOS1_ANGVAR EMOS2_ANGVAR EPN_ANGVAR RGS1_ANGVAR RGS2_ANGVAR"),
    ("XMM", "MISCDATA", 22, 40320, "MISCDATA"),
    ("XMM", "SPECQUAL", 2, 97920,
        "EMOS1_SPQ EMOS2_SPQ EPN_SPQ RGS1_SPQ_BETA RGS1_SPQ_WAVE RGS2_SPQ_BETA RGS2_SPQ_WAVE "
        "GAINFIT_LIMIT EMOS1_RESOLUTION EMOS2_RESOLUTION EPN_RESOLUTION RGS1_RESOLUTION "
        "RGS2_RESOLUTION"),
    ("XRT1", "XAREAEF", 9, 83520, "ONAXISXAREAEF VIGNETTING CORRAREA"),
    ("XRT1", "XENCIREN", 3, 247680, "XENCIREN"),
    ("XRT1", "XPSF", 16, 69615360,
        "ALIGNMENT_PARAMS SINGLE_GAUSS_PARAMS TRIPLE_GAUSS_PARAMS 100eV_00armin 100eV_03armin "
        "100eV_06armin 100eV_09armin 100eV_12armin 100eV_15armin 1500eV_00armin "
        "1500eV_03armin 1500eV_06armin 1500eV_09armin 1500eV_12armin 1500eV_15armin "
        "3000eV_00armin 3000eV_03a"),
    ("XRT2", "XAREAEF", 10, 83520, "ONAXISXAREAEF VIGNETTING CORRAREA"),
    ("XRT2", "XENCIREN", 3, 247680, "XENCIREN"),
    ("XRT2", "XPSF", 16, 69615360,
        "ALIGNMENT_PARAMS SINGLE_GAUSS_PARAMS TRIPLE_GAUSS_PARAMS 100eV_00armin 100eV_03armin "
        "100eV_06armin 100eV_09armin 100eV_12armin 100eV_15armin 1500eV_00armin "
        "1500eV_03armin 1500eV_06armin 1500eV_09armin 1500eV_12armin 1500eV_15armin "
        "3000eV_00armin 3000eV_03a"),
    ("XRT3", "XAREAEF", 12, 83520, "ONAXISXAREAEF VIGNETTING CORRAREA"),
    ("XRT3", "XENCIREN", 3, 270720, "XENCIREN"),
    ("XRT3", "XPSF", 18, 69618240,
        "ALIGNMENT_PARAMS SINGLE_GAUSS_PARAMS TRIPLE_GAUSS_PARAMS 100eV_00armin 100eV_03armin "
        "100eV_06armin 100eV_09armin 100eV_12armin 100eV_15armin 1500eV_00armin "
        "1500eV_03armin 1500eV_06armin 1500eV_09armin 1500eV_12armin 1500eV_15armin "
        "3000eV_00armin 3000eV_03a"),
)

XRT3_NAME = "XRT3_XAREAEF_0012.CCF"
TIME_SLICED: tuple[tuple[str, str], ...] = (
    ("EMOS1", "REDIST"),
    ("EMOS2", "REDIST"),
    ("EPN", "CTI"),
)
SCISIM_TYPES: tuple[tuple[str, str], ...] = (
    ("EMOS1", "BACKGROUND"),
    ("EPN", "BACKGROUND"),
    ("OM", "ZODIACAL"),
    ("XMM", "SPECQUAL"),
)
ADDED_TYPE = ("EMOS1", "ADUCONV")
WITHDRAWN_TYPE = ("EMOS1", "BADPIX")
ALWAYS_KEPT: tuple[tuple[str, str], ...] = (
    ADDED_TYPE,
    ("EMOS1", "BACKGROUND"),
    WITHDRAWN_TYPE,
    ("XRT3", "XAREAEF"),
    ("EMOS1", "REDIST"),
)

# (VALDATE, EVALDATE or None, SUBDATE) of the five issues of a time-sliced type, oldest first.
# Issue 1 is open-ended; issue 3 has a too-early EVALDATE (2013-06-30 instead of open), fixed by
# issue 4. For an observation in 2013-07..2014 analysed between the SUBDATEs of issues 3 and 4,
# cifbuild falls back to issue 1.
_SLICES: tuple[tuple[str, str | None, str], ...] = (
    ("2000-01-01T00:00:00", "2005-12-31T23:59:59", "2006-03-01T06:00:02"),
    ("2006-01-01T00:00:00", None, "2006-03-01T06:00:03"),
    ("2006-01-01T00:00:00", "2011-12-31T23:59:59", "2012-02-01T06:00:02"),
    ("2012-01-01T00:00:00", "2013-06-30T23:59:59", "2014-03-01T06:00:02"),
    ("2012-01-01T00:00:00", None, "2014-05-01T06:00:02"),
)
INCIDENT_OBS_DATE = "2013-09-01T00:00:00"

_CREATORS = (
    "/home/ccflib/sas/lib/perl5/deceit.pl 1.22",
    "/xdata/ccflib/local/SAS/xmmsas_20160201_1833/lib/perl5/deceit.pl",
    "deceit",
    "/sas/Linux/RHEL_5.8Server/32/sas15_0_0/lib/perl5/deceit.pl 1.22",
    "/data/xmm/saslib/installed/xmmsas_4.1/lib/perl5/deceit.pl 1.21",
)
_SAS = "[xmmsas_20020413_2031-5.3.0]"
_DAL_TAIL = "HighLow SAS_MEMORY_MODEL=Low SAS_ROWS= SAS_ZERO_ROWS= SAS_COLUMN_WISE="


@dataclass(frozen=True)
class CatalogueType:
    """One calibration type of the real CIF: its newest real issue, size and extensions."""

    scope: str
    typeid: str
    issue: int
    size: int
    extseqid: tuple[str, ...]


CATALOGUE: tuple[CatalogueType, ...] = tuple(
    CatalogueType(scope, typeid, issue, size, tuple(ext.split()))
    for scope, typeid, issue, size, ext in _CATALOGUE_ROWS
)


@dataclass
class ManifestEntry:
    """What the generator wrote for one constituent (and where)."""

    name: str
    scope: str
    typeid: str
    issue: int
    valdate: str
    evaldate: str | None
    subdate: str
    date: str
    category: str
    size: int
    md5: str
    in_full: bool
    in_valid: bool


@dataclass
class Manifest:
    """The generated archive: every constituent ever written, with its flags, plus the cases."""

    root: Path
    seed: int
    scale: float
    version: int
    entries: dict[str, ManifestEntry] = field(default_factory=dict)
    cases: dict[str, Any] = field(default_factory=dict)

    @property
    def full_dir(self) -> Path:
        """The folder holding every constituent (like /pub/ccf/constituents/)."""
        return self.root / "full"

    @property
    def valid_dir(self) -> Path:
        """The folder holding the valid set (like /pub/ccf/valid_constituents/)."""
        return self.root / "valid"

    def full_names(self) -> list[str]:
        """Sorted names of the constituents in full/."""
        return sorted(n for n, e in self.entries.items() if e.in_full)

    def valid_names(self) -> list[str]:
        """Sorted names of the constituents in valid/."""
        return sorted(n for n, e in self.entries.items() if e.in_valid)

    def to_json(self) -> str:
        """The manifest as a JSON document."""
        data = {
            "root": str(self.root),
            "seed": self.seed,
            "scale": self.scale,
            "version": self.version,
            "cases": self.cases,
            "entries": {name: asdict(entry) for name, entry in sorted(self.entries.items())},
        }
        return json.dumps(data, indent=1, sort_keys=True)

    def dump(self, path: Path) -> None:
        """Write the manifest as JSON to `path`."""
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read a manifest written by `dump`."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = {name: ManifestEntry(**value) for name, value in data["entries"].items()}
        return cls(
            Path(data["root"]), data["seed"], data["scale"], data["version"], entries, data["cases"]
        )


@dataclass
class _Spec:
    """The plan of one constituent before it is written."""

    scope: str
    typeid: str
    issue: int
    valdate: str
    evaldate: str | None
    subdate: str
    date: str
    category: str
    creator: str
    extseqid: tuple[str, ...]
    target_size: int
    header_blocks: int
    n_modifications: int
    extra_blocks: int = 0
    real_style: bool = False

    @property
    def name(self) -> str:
        return f"{self.scope}_{self.typeid}_{self.issue:04d}.CCF"


def _rng(seed: int, *key: str | int) -> np.random.Generator:
    """A generator that depends only on the seed and `key` (not on what else is generated)."""
    text = "/".join(str(part) for part in key)
    return np.random.default_rng([seed, zlib.crc32(text.encode())])


def _parse(text: str) -> datetime:
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def _fmt(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _day_time(day: datetime, rng: np.random.Generator) -> datetime:
    """`day` at a release-like time of day (mostly 06:00:0x, as ESA's nightly releases)."""
    if rng.random() < 0.7:
        return day.replace(hour=6, minute=0, second=int(rng.integers(1, 12)))
    return day.replace(hour=int(rng.integers(0, 24)), minute=int(rng.integers(0, 60)),
                       second=int(rng.integers(0, 60)))


def _sizes(ctype: CatalogueType, scale: float, rng: np.random.Generator, n: int) -> list[int]:
    base = ctype.size / scale
    return [max(MIN_SIZE, int(base * (rng.uniform(0.8, 1.1) if k < n - 1 else 1.0)))
            for k in range(n)]


def _header_blocks(rng: np.random.Generator) -> int:
    return int(rng.choice([1, 2, 2, 2, 3, 3, 4]))


def _plan_generic(ctype: CatalogueType, seed: int, scale: float) -> list[_Spec]:
    """Issues of an ordinary type: SUBDATE increasing, VALDATE non-decreasing."""
    rng = _rng(seed, "type", ctype.scope, ctype.typeid)
    n = int(rng.integers(1, 6))
    if (ctype.scope, ctype.typeid) == WITHDRAWN_TYPE:
        n = max(n, 3)
    n = min(n, ctype.issue)
    start = datetime(1998, 1, 1, tzinfo=UTC)
    span_days = (datetime(2020, 12, 31, tzinfo=UTC) - start).days
    days = np.sort(rng.choice(span_days, size=n, replace=False))
    subdates = [_day_time(start + timedelta(days=int(d)), rng) for d in days]
    first = rng.choice(["1998-01-01", "1999-01-01", "2000-01-01", "2000-01-13"])
    valdate = _parse(f"{first}T00:00:00")
    sizes = _sizes(ctype, scale, rng, n)
    creator = _CREATORS[int(rng.integers(len(_CREATORS)))]
    specs = []
    for k in range(n):
        sub = subdates[k]
        if k > 0 and rng.random() < 0.4 and sub > valdate:
            gap = int((sub - valdate).total_seconds())
            valdate = valdate + timedelta(seconds=int(rng.integers(0, gap)))
        created = sub - timedelta(seconds=int(rng.integers(3600, 10 * 86400)))
        specs.append(_Spec(
            scope=ctype.scope, typeid=ctype.typeid, issue=ctype.issue - n + 1 + k,
            valdate=_fmt(min(valdate, sub)), evaldate=None, subdate=_fmt(sub),
            date=_fmt(created) + ".000", category="XMMCCF", creator=creator,
            extseqid=ctype.extseqid, target_size=sizes[k], header_blocks=_header_blocks(rng),
            n_modifications=int(rng.integers(0, 5)),
        ))
    if ctype == CATALOGUE[0]:
        specs[-1].header_blocks = 3  # guarantee a 3-block primary header in every archive
    if (ctype.scope, ctype.typeid) in SCISIM_TYPES:
        last = specs[-1]
        sub = _parse(last.subdate) + timedelta(days=int(rng.integers(30, 400)))
        specs.append(_Spec(
            scope=ctype.scope, typeid=ctype.typeid, issue=last.issue + 1, valdate=last.valdate,
            evaldate=None, subdate=_fmt(sub), date=_fmt(sub - timedelta(days=2)) + ".000",
            category="SCISIMCCF", creator=creator, extseqid=ctype.extseqid,
            target_size=last.target_size, header_blocks=2, n_modifications=1,
        ))
    return specs


def _plan_sliced(ctype: CatalogueType, seed: int, scale: float) -> list[_Spec]:
    """Issues of a time-sliced type, following `_SLICES`."""
    rng = _rng(seed, "type", ctype.scope, ctype.typeid)
    n = len(_SLICES)
    sizes = _sizes(ctype, scale, rng, n)
    specs = []
    for k, (valdate, evaldate, subdate) in enumerate(_SLICES):
        created = _parse(subdate) - timedelta(seconds=int(rng.integers(3600, 5 * 86400)))
        specs.append(_Spec(
            scope=ctype.scope, typeid=ctype.typeid, issue=ctype.issue - n + 1 + k,
            valdate=valdate, evaldate=evaldate, subdate=subdate, date=_fmt(created) + ".000",
            category="XMMCCF", creator=_CREATORS[0], extseqid=ctype.extseqid,
            target_size=sizes[k], header_blocks=_header_blocks(rng),
            n_modifications=int(rng.integers(0, 4)),
        ))
    return specs


class _Common(TypedDict):
    """The fields the XRT3 plans share."""

    scope: str
    typeid: str
    category: str
    creator: str
    extseqid: tuple[str, ...]
    target_size: int


def _plan_xrt3(ctype: CatalogueType, scale: float, version: int) -> list[_Spec]:
    """XRT3 XAREAEF issues 10..12, issue 12 shaped like the real file (and its 2014 change)."""
    size = max(MIN_SIZE, int(ctype.size / scale))
    common = _Common(scope="XRT3", typeid="XAREAEF", category="XMMCCF",
                     creator=_CREATORS[0], extseqid=ctype.extseqid, target_size=size)
    specs = [
        _Spec(issue=10, valdate="2000-01-13T00:00:00", evaldate=None,
              subdate="2002-04-20T06:00:03", date="2002-04-13T20:31:07.000",
              header_blocks=2, n_modifications=1, **common),
        _Spec(issue=11, valdate="2003-01-01T00:00:00", evaldate=None,
              subdate="2008-07-18T06:00:03", date="2008-07-15T10:12:44.000",
              header_blocks=2, n_modifications=2, **common),
    ]
    v2 = version >= 2
    specs.append(_Spec(
        issue=12, valdate="2000-01-13T00:00:00", evaldate=None,
        subdate="2014-11-11T06:00:02" if v2 else "2014-09-20T06:00:05",
        date="2014-09-19T12:00:28.000", header_blocks=2, n_modifications=4 if v2 else 3,
        extra_blocks=1 if v2 else 0, real_style=True, **common,
    ))
    return specs


def _long_cards(spec: _Spec, rng: np.random.Generator) -> tuple[list[tuple[str, str]], list[str]]:
    """XPROC/XDAL long-string cards and HISTORY lines recording the file's (made-up) life."""
    name = spec.name
    created = _parse(spec.date)
    steps = [created + timedelta(seconds=1 + k) for k in range(min(2, spec.n_modifications))]
    if spec.real_style:
        steps = [created + timedelta(seconds=1), created + timedelta(seconds=2),
                 _parse("2014-09-20T06:00:05")]
        if spec.n_modifications >= 4:
            steps.append(_parse("2014-11-11T06:00:02"))
    else:
        sub = _parse(spec.subdate)
        steps += [sub - timedelta(seconds=k) for k in range(spec.n_modifications - len(steps))]
        steps.sort()
    cards: list[tuple[str, str]] = []
    n_proc = 1 + len(steps)
    for k in range(n_proc):
        sets = " ".join(f'"{name}"' for _ in range(1 + k % 3))
        cards.append((f"XPROC{k}", f"ccfextseq sets='{sets}' production=no # (ccftools-1.26.1) "
                      f"{_SAS}" if k else f"deceit file='{spec.typeid.lower()}_main.dct' "
                      f"withperllibrary=no perllibrary='deceit.pl' # (deceit-1.15.2) {_SAS}"))
    history = [f"Created by {spec.creator} at {_fmt(created)}"]
    dal = [f"{name} {_fmt(created)}.000 Create {spec.creator} {_DAL_TAIL}"]
    for step in steps:
        dal.append(f"{name} {_fmt(step)}.000 Modify ccfextseq (ccftools-1.26.1) {_SAS} {_DAL_TAIL}")
        history.append(f"Modified by ccfextseq (ccftools-1.26.1) {_SAS} at {_fmt(step)}")
    for k, text in enumerate(reversed(dal)):
        cards.append((f"XDAL{k}", text))
    return cards, history


def _primary_header(spec: _Spec, rng: np.random.Generator) -> bytes:
    """The primary header: indexing keywords, long strings, HISTORY; `header_blocks` blocks."""
    header = fits.Header()
    header["SIMPLE"] = (True, "file does conform to FITS standard")
    header["BITPIX"] = (8, "number of bits per data pixel")
    header["NAXIS"] = (0, "number of data axes")
    header["EXTEND"] = (True, "FITS dataset may contain extensions")
    long_cards, history = _long_cards(spec, rng)
    for key, value in long_cards:
        header[key] = value
    comment = "name of code that generated this file"[: max(0, 47 - len(spec.creator))]
    header["CREATOR"] = (spec.creator, comment) if comment else spec.creator
    header["DATE"] = (spec.date, "creation date")
    header["FILENAME"] = spec.name
    header["TELESCOP"] = ("XMM", "mission name")
    header["INSTRUME"] = ("", "instrument name")
    header["SCOPE"] = (spec.scope, "calibration constituent scope")
    header["TYPEID"] = (spec.typeid, "calibration identifier")
    header["TYPEDESC"] = ""
    header["ISSUE"] = (spec.issue, "issue number")
    header["VALDATE"] = (spec.valdate, "start of validity date")
    if spec.evaldate is not None:
        header["EVALDATE"] = (spec.evaldate, "end of validity date")
    header["EXTSEQU"] = "ANY"
    header["EXTSEQID"] = " ".join(spec.extseqid) + " "
    header["CATEGORY"] = spec.category
    header["SUBDATE"] = spec.subdate
    for line in history:
        header.add_history(line)
    cards = len(header.tostring(padding=False, endcard=False)) // 80
    blocks = max(spec.header_blocks, math.ceil((cards + 1) / 36))
    wanted = 36 * (blocks - 1) + int(rng.integers(1, 30))
    filler = 0
    while cards < wanted:
        header.add_history(f"Calibration note {filler}: synthetic ccfcache demo constituent")
        cards += 1
        filler += 1
    text: str = header.tostring(padding=True, endcard=True)
    return text.encode("ascii")


def _table(extname: str, rows: int, width_values: int, data: bytes) -> bytes:
    """One binary-table extension (header and padded data) with ENERGY and VALUE columns."""
    cards = [
        fits.Card("XTENSION", "BINTABLE", "binary table extension"),
        fits.Card("BITPIX", 8, "8-bit bytes"),
        fits.Card("NAXIS", 2, "2-dimensional binary table"),
        fits.Card("NAXIS1", 4 * (1 + width_values), "width of table in bytes"),
        fits.Card("NAXIS2", rows, "number of rows in table"),
        fits.Card("PCOUNT", 0, "size of special data area"),
        fits.Card("GCOUNT", 1, "one data group (required keyword)"),
        fits.Card("TFIELDS", 2, "number of fields in each row"),
        fits.Card("TTYPE1", "ENERGY", "Energy"),
        fits.Card("TFORM1", "E", "format of field"),
        fits.Card("TUNIT1", "eV", "Units of column"),
        fits.Card("TTYPE2", "VALUE", "Calibration value"),
        fits.Card("TFORM2", f"{width_values}E" if width_values > 1 else "E", "format of field"),
        fits.Card("EXTNAME", extname, "The name of this table"),
    ]
    text = "".join(card.image for card in cards) + "END".ljust(80)
    text = text.ljust(math.ceil(len(text) / BLOCK) * BLOCK)
    padded = data + b"\0" * (-len(data) % BLOCK)
    return text.encode("ascii") + padded


def _build(spec: _Spec, seed: int) -> bytes:
    """The bytes of one constituent, about `target_size` long (a multiple of 2880)."""
    rng = _rng(seed, "file", spec.name, spec.subdate if spec.real_style else "")
    primary = _primary_header(spec, rng)
    n_ext = len(spec.extseqid)
    primary_blocks = len(primary) // BLOCK
    total = max(math.ceil(spec.target_size / BLOCK), primary_blocks + 2 * n_ext)
    data_blocks = total + spec.extra_blocks - primary_blocks - n_ext
    split = rng.multinomial(data_blocks - n_ext, np.full(n_ext, 1.0 / n_ext)) + 1
    parts = [primary]
    for extname, blocks in zip(spec.extseqid, split, strict=True):
        width = int(rng.integers(1, 32))
        rows = int(blocks) * BLOCK // (4 * (1 + width))
        values = rng.standard_normal(rows * (1 + width), dtype=np.float32)
        parts.append(_table(extname, rows, width, values.astype(">f4").tobytes()))
    return b"".join(parts)


def _selected(specs: list[_Spec], obs: str, category: str) -> _Spec | None:
    """cifbuild's rule for one type at analysis date 'today' (every SUBDATE is in the past)."""
    candidates = [
        s for s in specs
        if s.category == category and s.valdate <= obs
        and (s.evaldate is None or s.evaldate >= obs)
    ]
    return max(candidates, key=lambda s: s.issue, default=None)


def _valid_set(specs: list[_Spec]) -> set[str]:
    """Every constituent of one type that some observation date selects today."""
    points = {s.valdate for s in specs}
    points |= {_fmt(_parse(s.evaldate) + timedelta(seconds=1)) for s in specs if s.evaldate}
    points.add(FAR_FUTURE)
    names = set()
    for category in {s.category for s in specs}:
        for obs in points:
            chosen = _selected(specs, obs, category)
            if chosen is not None:
                names.add(chosen.name)
    return names


def _chosen_types(types: int | None) -> list[CatalogueType]:
    if types is None:
        return list(CATALOGUE)
    keep = {(c.scope, c.typeid) for c in CATALOGUE[: max(types, 0)]} | set(ALWAYS_KEPT)
    return [c for c in CATALOGUE if (c.scope, c.typeid) in keep]


def _plan(seed: int, scale: float, version: int, types: int | None) -> tuple[
        dict[tuple[str, str], list[_Spec]], dict[str, Any]]:
    plan: dict[tuple[str, str], list[_Spec]] = {}
    for ctype in _chosen_types(types):
        key = (ctype.scope, ctype.typeid)
        if key == ("XRT3", "XAREAEF"):
            plan[key] = _plan_xrt3(ctype, scale, version)
        elif key in TIME_SLICED:
            plan[key] = _plan_sliced(ctype, seed, scale)
        else:
            plan[key] = _plan_generic(ctype, seed, scale)
    added_type = plan[ADDED_TYPE]
    top = max((s for s in added_type if s.category == "XMMCCF"), key=lambda s: s.issue)
    added = _Spec(
        scope=top.scope, typeid=top.typeid, issue=top.issue + 1, valdate=top.valdate,
        evaldate=None, subdate="2021-06-15T06:00:02", date="2021-06-10T14:22:31.000",
        category="XMMCCF", creator=top.creator, extseqid=top.extseqid,
        target_size=top.target_size, header_blocks=2, n_modifications=2,
    )
    withdrawn = max((s for s in plan[WITHDRAWN_TYPE] if s.category == "XMMCCF"),
                    key=lambda s: s.issue)
    sliced = [plan[key] for key in TIME_SLICED if key in plan]
    cases: dict[str, Any] = {
        "earlier_valdate": {"older": "XRT3_XAREAEF_0011.CCF", "newer": XRT3_NAME},
        "evaldate_fix": [
            {"type": f"{s[0].scope} {s[0].typeid}", "fallback": s[1].name, "wrong": s[3].name,
             "fixed_by": s[4].name, "obs_date": INCIDENT_OBS_DATE,
             "anal_date_wrong": s[3].subdate, "anal_date_fixed": s[4].subdate}
            for s in sliced
        ],
        "time_sliced": [f"{s[0].scope} {s[0].typeid}" for s in sliced],
        "scisim": sorted(s.name for specs in plan.values() for s in specs
                         if s.category == "SCISIMCCF"),
        "v2": {"modified": XRT3_NAME, "added": added.name, "withdrawn": withdrawn.name},
    }
    if version >= 2:
        added_type.append(added)
    return plan, cases


def _write(path: Path, data: bytes, subdate: str) -> None:
    path.write_bytes(data)
    stamp = _parse(subdate).timestamp()
    os.utime(path, (stamp, stamp))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def generate_archive(
    root: Path, *, seed: int = 0, scale: float = 1000.0, version: int = 1,
    types: int | None = None,
) -> Manifest:
    """Write `root/full/` and `root/valid/` (which must not exist yet) and return the manifest.

    `scale` divides the real sizes (minimum 8640 bytes per file); `types` keeps the first N
    catalogue types plus the few that carry the special cases; `version` 1 or 2 (see module).
    Files get their SUBDATE as modification time. full/ also holds README.txt and extras/.
    """
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, not {version!r}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale!r}")
    root = Path(root)
    manifest = Manifest(root=root, seed=seed, scale=scale, version=version)
    for folder in (manifest.full_dir, manifest.valid_dir):
        if folder.exists():
            raise FileExistsError(f"{folder} already exists; generate into a fresh root")
    plan, manifest.cases = _plan(seed, scale, version, types)
    withdrawn = manifest.cases["v2"]["withdrawn"] if version >= 2 else None
    manifest.full_dir.mkdir(parents=True)
    manifest.valid_dir.mkdir(parents=True)
    for specs in plan.values():
        present = [s for s in specs if s.name != withdrawn]
        valid = _valid_set(present)
        for spec in specs:
            data = _build(spec, seed)
            in_full = spec.name != withdrawn
            in_valid = spec.name in valid
            manifest.entries[spec.name] = ManifestEntry(
                name=spec.name, scope=spec.scope, typeid=spec.typeid, issue=spec.issue,
                valdate=spec.valdate, evaldate=spec.evaldate, subdate=spec.subdate,
                date=spec.date[:19], category=spec.category, size=len(data),
                md5=hashlib.md5(data, usedforsecurity=False).hexdigest(), in_full=in_full,
                in_valid=in_valid,
            )
            if in_full:
                _write(manifest.full_dir / spec.name, data, spec.subdate)
            if in_valid:
                _link_or_copy(manifest.full_dir / spec.name, manifest.valid_dir / spec.name)
    readme = manifest.full_dir / "README.txt"
    _write(readme, b"Synthetic XMM-Newton CCF archive generated by ccfcache.demo.\n",
           "2021-01-01T00:00:00")
    (manifest.full_dir / "extras").mkdir()
    _write(manifest.full_dir / "extras" / "notes.txt", b"not a constituent\n",
           "2021-01-01T00:00:00")
    stamp = _parse("2021-01-01T00:00:00").timestamp()
    os.utime(manifest.full_dir / "extras", (stamp, stamp))
    return manifest
