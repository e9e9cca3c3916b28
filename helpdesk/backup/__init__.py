"""Backups and disaster recovery: `helpdesk backup create | verify | restore | prune`.

A backup is one directory (``<backup_dir>/<UTC time>-<id>``, mode 0700) of three files:

    manifest.enc     the manifest (JSON: sizes, SHA-256s, versions, counts), AES-256-GCM
    database.enc     the database snapshot: SQLite's own file image (backup API into memory,
                     then serialized) or `pg_dump -Fc` output, streamed through the sealer
    attachments.enc  a tar stream of the attachment store's objects (already ciphertext under
                     each ticket's data key) that the snapshot's rows reference

Each ``.enc`` part is sealed under the backup key (`HELPDESK_BACKUP_KEY`, never a KEK) in
1 MiB segments by `helpdesk.storage.segments.SegmentEncryptor`: every segment is authenticated with
associated data binding the backup id, the part's name, the segment's index and a
final-segment flag, so a flipped byte, a reordered, dropped or foreign segment, and a file cut
short are all detected (the STREAM construction's guarantees). Plaintext exists only in
memory: nothing unsealed is written to disk before `restore` writes the target.

The backup holds no key: KEKs, the audit key and the blind-index key live in the secret store
and must survive a disaster on their own (see README, "Backups and disaster recovery").
"""

from helpdesk.backup.errors import BackupError

__all__ = ["BackupError"]
