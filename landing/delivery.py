"""Check a ready partition's manifest against its files and read them into one raw frame.

Every check here fails the whole partition (``PartitionError``) with the numbers that did not
agree; nothing of a failed partition is used. See feeds.md, *Partitions and manifests*.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import polars as pl

from landing.errors import PartitionError
from landing.partitions import DISCHARGES, MANIFEST, Partition
from landing.readers import ENCODINGS, READ_ERROR, file_format, formats_in_words, read_bytes

ROW_NUMBER = "row_number"
DECIMAL_LITERAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# A manifest is a few hundred bytes; anything this large is not one.
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ManifestFile:
    name: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """The sender's promise about a partition: which files, how many rows, what money."""

    encoding: str
    files: list[ManifestFile]
    row_count: int
    total_cost_sum: Decimal | None


@dataclass
class Delivery:
    """A partition whose manifest checks passed: its raw rows, all strings, in file order."""

    partition: Partition
    content_hash: str
    manifest: Manifest
    frame: pl.DataFrame  # the contract columns present + row_number (+ _read_error for JSONL)

    @property
    def rows_read(self) -> int:
        return self.frame.height


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PartitionError("manifest_field", f"{what} must be a whole number ≥ 0")
    return value


def _decimal(value: object, what: str) -> Decimal:
    text = str(value) if isinstance(value, int | Decimal) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not DECIMAL_LITERAL.fullmatch(text):
        raise PartitionError("manifest_field", f"{what} must be a decimal number like 1234.56")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise PartitionError("manifest_field", f"{what} is not a decimal number") from None


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise PartitionError("manifest_field", "every file needs a name")
    if "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
        # Nothing outside the partition folder is ever read.
        raise PartitionError(
            "file_path",
            "the manifest lists a file outside the partition folder (a path, not a name)",
        )
    if name.startswith((".", "_")):
        raise PartitionError(
            "file_name", "the manifest lists a hidden or temporary file (name starts with . or _)"
        )
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        raise PartitionError("file_name", "the manifest lists a file name longer than 255 bytes")
    if file_format(name) is None:
        raise PartitionError(
            "file_type", f"{name}: unsupported file type (use {formats_in_words()})"
        )
    return name


def load_manifest(partition: Partition) -> tuple[Manifest, bytes]:
    """Parse and check ``_manifest.json``; returns it with its bytes (the content's identity)."""
    path = partition.manifest_path
    try:
        raw = path.read_bytes()[: _MAX_MANIFEST_BYTES + 1]
    except OSError as exc:
        raise PartitionError("manifest_read", f"cannot read {MANIFEST}: {exc.strerror}") from None
    if len(raw) > _MAX_MANIFEST_BYTES:
        raise PartitionError("manifest_json", f"{MANIFEST} is larger than 16 MiB")
    try:
        doc = json.loads(raw.decode("utf-8-sig"), parse_float=Decimal)
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, a 5000-digit number
        raise PartitionError("manifest_json", f"{MANIFEST} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise PartitionError("manifest_json", f"{MANIFEST} must be a JSON object")

    day_field = "feed_date" if partition.kind == DISCHARGES else "snapshot_date"
    if doc.get(day_field) != partition.day.isoformat():
        raise PartitionError(
            "manifest_key",
            f"manifest {day_field} does not match the folder ({partition.day.isoformat()})",
        )
    if partition.kind == DISCHARGES and doc.get("source") != partition.source:
        raise PartitionError(
            "manifest_key", f"manifest source does not match the folder ({partition.source})"
        )

    encoding_raw = doc.get("encoding", "utf-8")
    encoding = ENCODINGS.get(str(encoding_raw).strip().lower()) if encoding_raw else None
    if encoding is None:
        raise PartitionError("manifest_field", "encoding must be utf-8 or gb18030")

    files_raw = doc.get("files")
    if not isinstance(files_raw, list):
        raise PartitionError("manifest_field", "files must be a list")
    files: list[ManifestFile] = []
    for entry in files_raw:
        if not isinstance(entry, dict):
            raise PartitionError("manifest_field", "each entry of files must be an object")
        name = _check_name(entry.get("name"))
        sha = entry.get("sha256")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise PartitionError("manifest_field", f"{name}: sha256 must be 64 hex characters")
        files.append(ManifestFile(name, _int(entry.get("rows"), f"{name}: rows"), sha.lower()))
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise PartitionError("manifest_field", "the manifest lists a file twice")

    total = None
    if partition.kind == DISCHARGES:
        if "total_cost_sum" not in doc:
            raise PartitionError("manifest_field", "total_cost_sum is missing")
        total = _decimal(doc["total_cost_sum"], "total_cost_sum")
    manifest = Manifest(encoding, files, _int(doc.get("row_count"), "row_count"), total)
    return manifest, raw


def check_folder(partition: Partition, manifest: Manifest) -> None:
    """Every listed file present and regular; nothing unlisted beside them."""
    listed = {f.name for f in manifest.files}
    try:
        entries = sorted(os.listdir(partition.path))
    except OSError as exc:
        raise PartitionError("folder", f"cannot list the partition: {exc.strerror}") from None
    for entry in entries:
        if entry.startswith((".", "_")):
            continue  # transfer tools' temporary files, and the manifest itself
        if entry not in listed:
            raise PartitionError(
                "unlisted_file", f"{entry} is in the folder but not in the manifest"
            )
    for f in manifest.files:
        try:
            st = os.lstat(partition.path / f.name)
        except FileNotFoundError:
            raise PartitionError("missing_file", f"{f.name} is listed but not there") from None
        except OSError as exc:
            # A name the file system refuses is the manifest's problem, not a transient error.
            raise PartitionError("file_name", f"{f.name}: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            raise PartitionError(
                "symlink", f"{f.name} is a symbolic link; only regular files are read"
            )
        if not stat.S_ISREG(st.st_mode):
            raise PartitionError("not_a_file", f"{f.name} is not a regular file")


def read_delivery(
    partition: Partition,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    *,
    keep_dates: bool = False,
) -> Delivery:
    """Check the manifest and files, read them, and check rows, row_count and total_cost_sum.

    ``keep_dates``: typed Parquet date columns stay ``pl.Date`` (when every file has them typed);
    everything else is text.
    """
    manifest, manifest_bytes = load_manifest(partition)
    check_folder(partition, manifest)
    wanted = (*required, *optional)
    frames: list[pl.DataFrame] = []
    for f in manifest.files:
        path = partition.path / f.name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PartitionError("file_read", f"cannot read {f.name}: {exc.strerror}") from None
        frame = _read_checked(f, data, manifest.encoding, wanted, keep_dates)
        if frame.height != f.rows:
            raise PartitionError(
                "rows", f"{f.name}: read {frame.height} rows, the manifest says {f.rows}"
            )
        if frame.height == 0 and frame.width == 0:
            continue  # an empty JSON-lines file: no columns to check
        bad_lines = READ_ERROR in frame.columns
        missing = [c for c in required if c not in frame.columns]
        if missing and not (
            bad_lines and frame.select(pl.col(READ_ERROR).is_not_null().all()).item()
        ):
            raise PartitionError(
                "missing_column", f"{f.name} lacks the required column(s) {', '.join(missing)}"
            )
        frames.append(
            frame.select(
                [
                    pl.col(c) if c in frame.columns else pl.lit(None, pl.String).alias(c)
                    for c in (*wanted, READ_ERROR, "_line")
                ]
            )
        )
    columns = (*wanted, READ_ERROR, "_line")
    if keep_dates:
        frames = _same_types(frames)
    raw = (
        pl.concat(frames, how="vertical")
        if frames
        else pl.DataFrame({c: pl.Series(c, [], pl.String) for c in columns})
    )
    raw = raw.with_row_index(ROW_NUMBER, offset=1).with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))
    if raw.height != manifest.row_count:
        raise PartitionError(
            "row_count", f"read {raw.height} rows, the manifest's row_count is {manifest.row_count}"
        )
    if manifest.total_cost_sum is not None:
        found = exact_sum(raw.get_column("total_cost"))
        if found != manifest.total_cost_sum:
            raise PartitionError(
                "total_cost_sum",
                f"total_cost adds up to {found}, the manifest's total_cost_sum is "
                f"{manifest.total_cost_sum}",
            )
    return Delivery(partition, hashlib.sha256(manifest_bytes).hexdigest(), manifest, raw)


# A file this large is hashed on a thread while it is decoded: hashlib and the readers
# (polars, pyarrow) release the GIL, so the 0.25 s of sha256 over a 370 MB snapshot no longer
# waits before its ~0.7 s of decoding (ADR 0025). A smaller file is hashed first, as it was.
_HASH_BESIDE_DECODE_BYTES = 16 * 1024 * 1024


def _sha256_mismatch(f: ManifestFile, digest: str) -> PartitionError:
    return PartitionError(
        "sha256", f"{f.name}: sha256 is {digest[:12]}…, the manifest says {f.sha256[:12]}…"
    )


def _read_checked(
    f: ManifestFile, data: bytes, encoding: str, wanted: tuple[str, ...], keep_dates: bool
) -> pl.DataFrame:
    """The file's rows, once its bytes have the manifest's sha256: no frame of a file with
    another digest is returned, and its digest is the error even when decoding failed too."""
    if len(data) < _HASH_BESIDE_DECODE_BYTES:
        digest = hashlib.sha256(data).hexdigest()
        if digest != f.sha256:
            raise _sha256_mismatch(f, digest)
        return read_bytes(f.name, data, encoding, columns=wanted, keep_dates=keep_dates)
    with ThreadPoolExecutor(max_workers=1) as hasher:
        hashing = hasher.submit(lambda: hashlib.sha256(data).hexdigest())
        try:
            frame = read_bytes(f.name, data, encoding, columns=wanted, keep_dates=keep_dates)
        except Exception:
            digest = hashing.result()
            if digest != f.sha256:
                raise _sha256_mismatch(f, digest) from None
            raise
        digest = hashing.result()
    if digest != f.sha256:
        raise _sha256_mismatch(f, digest)
    return frame


def _same_types(frames: list[pl.DataFrame]) -> list[pl.DataFrame]:
    """A column typed as a date in one file and text in another becomes text in all of them."""
    if len(frames) < 2:
        return frames
    mixed = {
        c
        for c in frames[0].columns
        if len({f.schema[c] for f in frames}) > 1 and any(f.schema[c] == pl.Date for f in frames)
    }
    return [
        f.with_columns(pl.col(c).dt.to_string("%Y-%m-%d") for c in mixed if f.schema[c] == pl.Date)
        for f in frames
    ]


def exact_sum(values: pl.Series) -> Decimal:
    """Exact sum of the values that are decimal literals; the others do not count (feeds.md)."""
    literals = values.filter(values.str.contains(r"^-?[0-9]+(\.[0-9]+)?$").fill_null(False))
    return sum((Decimal(v) for v in literals.to_list()), Decimal(0))
