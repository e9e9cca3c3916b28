"""The attachment store the settings choose."""

from __future__ import annotations

from helpdesk.settings import ConfigurationError, Settings
from helpdesk.storage.azure_blob import AzureBlobStore
from helpdesk.storage.local import LocalEncryptedStore
from helpdesk.storage.store import AttachmentStore


def build_store(settings: Settings) -> AttachmentStore:
    """The attachment store the settings choose (local by default)."""
    if settings.attachment_storage == "azure":
        if settings.azure_storage_connection_string is None:
            raise ConfigurationError(
                "HELPDESK_AZURE_STORAGE_CONNECTION_STRING is required for azure storage"
            )
        return AzureBlobStore(
            settings.azure_storage_connection_string.get_secret_value(),
            settings.azure_storage_container,
        )
    return LocalEncryptedStore(settings.attachments_path)
