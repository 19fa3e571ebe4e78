"""The forecasting data layer in one namespace (``from tasks.forecasting import data as series_data``).

The code lives in one-concern modules: :mod:`~tasks.forecasting.loading` (reading and cleaning
CSV files and the statsmodels series, ``--id-col`` panels), :mod:`~tasks.forecasting.seasons`
(frequencies, seasons, calendar inputs, the defaults that follow), :mod:`~tasks.forecasting.transforms`
(the target transform for NumPy, TensorFlow and text, and the scaler fit) and
:mod:`~tasks.forecasting.windows` (splits, model rows, windows).
"""

from tasks.forecasting.loading import (  # noqa: F401
    Series, StatsmodelsDataset, format_time, infer_datetime_freq, load_frame, load_panel, load_series, read_csv,
    regularise, fill_missing,
)
from tasks.forecasting.seasons import (  # noqa: F401
    calendar_features, calendar_names, calendar_seasons, default_horizon, default_lookback, default_min_history,
    detect_seasons, fixed_step, holiday_flags, hybrid_season, seasonal_lags,
)
from tasks.forecasting.transforms import check_transform  # noqa: F401
from tasks.forecasting.windows import (  # noqa: F401
    MIN_TRAIN_WINDOWS, Split, as_list, check_length, encoder_features, extend_for_prediction, history, model_rows,
    fit_scaler, pad_rows, padding, window_arrays, window_dataset,
)
