"""The stock ledger: documents and their types, posting and checks, stock, batches, units, freeze, diagnosis."""
