"""Listen and correct: a static review page of detections, search hits or a calibration sample.

``build_review`` is the library call behind ``scanner review``; the verdicts it collects
(``verdicts.csv``) feed ``scanner train --add`` and ``scanner calibrate``.
"""

from scanner.review.items import ReviewItem, load_source, select_items
from scanner.review.page import VERDICT_COLUMNS, ReviewResult, build_review

__all__ = ["VERDICT_COLUMNS", "ReviewItem", "ReviewResult", "build_review", "load_source",
           "select_items"]
