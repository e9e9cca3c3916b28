"""Attachment bytes at rest, encrypted under the ticket's data key.

`segments` seals and opens the stored format, `store` is the interface every backend
implements (and the storage keys), `local` and `azure_blob` are the two backends, and
`configured` picks the one the settings choose. Destroying the ticket's data key makes
every stored copy unreadable (crypto-shredding).
"""
