"""Task packages built on lstm_core: sentiment, translation, speech_commands, forecasting."""
