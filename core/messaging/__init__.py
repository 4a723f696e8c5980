"""Messaging: inbound events, the outbox, targets and recipients, message parts."""
