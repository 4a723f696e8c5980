"""Chat command and card action handlers."""
