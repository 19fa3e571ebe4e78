"""Multi-step time-series forecasting with an lstm_core.LSTM encoder, honest baselines, LiteRT export."""
