"""Approvals: a document's sign-off by roles, decided by compare-and-set, posted by its last approval."""
