"""Raw-file ingest: validation, archiving, quarantine."""

from zsds.ingest.core import IngestResult, ingest_file, ingest_incoming, quarantine_file, sha256_of
from zsds.ingest.validate import RawFileError, RawInfo, validate_raw

__all__ = [
    "IngestResult",
    "RawFileError",
    "RawInfo",
    "ingest_file",
    "ingest_incoming",
    "quarantine_file",
    "sha256_of",
    "validate_raw",
]
