"""Time in a file: windows, smoothing, thresholds and events (``segments``), and what is made
of them afterwards: label exports (``export``) and the HTML report (``report``)."""
