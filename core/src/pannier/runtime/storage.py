"""What each message storage mode stores (Mirth's ``DonkeyEngineController.getStorageSettings``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pannier.model.status import StorageMode


@dataclass(frozen=True)
class StorageSettings:
    enabled: bool = True
    durable: bool = True
    raw_durable: bool = True
    message_recovery: bool = True
    store_raw: bool = True
    store_processed_raw: bool = True
    store_transformed: bool = True
    store_source_encoded: bool = True
    store_destination_encoded: bool = True
    store_sent: bool = True
    store_response: bool = True
    store_response_transformed: bool = True
    store_processed_response: bool = True
    store_sent_response: bool = True
    store_maps: bool = True
    store_response_map: bool = True
    store_custom_metadata: bool = True


def storage_settings(mode: StorageMode) -> StorageSettings:
    """The storage settings Mirth derives from a channel's ``messageStorageMode`` (§3.1)."""
    settings = StorageSettings()
    if mode <= StorageMode.PRODUCTION:
        settings = replace(
            settings,
            store_processed_raw=False,
            store_transformed=False,
            store_response_transformed=False,
            store_processed_response=False,
        )
    if mode <= StorageMode.RAW:
        settings = replace(
            settings,
            message_recovery=False,
            durable=False,
            store_maps=False,
            store_response_map=False,
            store_source_encoded=False,
            store_destination_encoded=False,
            store_sent=False,
            store_response=False,
            store_sent_response=False,
        )
    if mode <= StorageMode.METADATA:
        settings = replace(settings, store_raw=False, raw_durable=False)
    if mode <= StorageMode.DISABLED:
        settings = replace(settings, enabled=False, store_custom_metadata=False)
    return settings
