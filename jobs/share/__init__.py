"""The Delta Sharing server: each partner reads its own share and the alliance share over the
open protocol, with tokens per recipient and signed, expiring file URLs."""
