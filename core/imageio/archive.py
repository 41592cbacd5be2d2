"""Safe extraction of uploaded zip files.

An upload is untrusted: every member is checked before a byte is written
(paths that would land outside the target folder, links, the number of files,
declared sizes, the compression ratio of a "zip bomb"), and the bytes actually
written are counted again while extracting, because a zip's declared sizes can lie.
The limits live in ``core.config``.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from core import config
from core.errors import LiverSegError
from core.reasons import reason

_CHUNK = 1 << 20


def _member_path(info: zipfile.ZipInfo, name: str) -> PurePosixPath:
    """The member's relative path, or an error if it would escape the target folder."""
    path = PurePosixPath(info.filename.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise LiverSegError(f"{name} contains {info.filename!r}, which points outside the zip's folder; refusing the whole zip")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise LiverSegError(f"{name} contains a symbolic link ({info.filename!r}); zip the DICOM files themselves")
    return path


def check_zip(archive: zipfile.ZipFile, name: str) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The file members of ``archive`` with their safe relative paths, after every check passes."""
    members = [info for info in archive.infolist() if not info.is_dir()]
    if len(members) > config.ZIP_MAX_FILES:
        raise LiverSegError(
            f"{name} holds {len(members)} files, more than the limit of {config.ZIP_MAX_FILES}; zip one series only "
            "(or raise LIVERSEG_ZIP_MAX_FILES)"
        )
    checked = []
    total = compressed = 0
    for info in members:
        path = _member_path(info, name)
        if info.flag_bits & 0x1:
            raise LiverSegError(f"{name} is encrypted; zip the series again without a password")
        if info.file_size > config.ZIP_MAX_FILE_BYTES:
            raise LiverSegError(
                f"{name}: {info.filename!r} would unpack to {info.file_size / 2**20:.0f} MB, more than the "
                f"{config.ZIP_MAX_FILE_BYTES / 2**20:.0f} MB allowed per file"
            )
        total += info.file_size
        compressed += info.compress_size
        checked.append((info, path))
    if total > config.ZIP_MAX_TOTAL_BYTES:
        raise LiverSegError(
            f"{name} would unpack to {total / 2**20:.0f} MB, more than the {config.ZIP_MAX_TOTAL_BYTES / 2**20:.0f} MB "
            "allowed; upload one series (or raise LIVERSEG_ZIP_MAX_TOTAL_MB)"
        )
    # The ratio is judged on the whole archive: a small file of zeros may compress 1000:1 harmlessly,
    # but a bomb's payload dominates the total.
    if total > _CHUNK and total > config.ZIP_MAX_RATIO * max(compressed, 1):
        raise LiverSegError(
            f"{name} is compressed {total / max(compressed, 1):.0f}:1, beyond the {config.ZIP_MAX_RATIO:.0f}:1 "
            "a medical image reaches; it looks like a zip bomb and was not unpacked"
        )
    return checked


def extract_zip(path: Path, target: Path) -> int:
    """Check and extract the zip at ``path`` into the folder ``target``; return the number of files.

    Raises ``LiverSegError`` for a damaged, encrypted or unsafe zip, before anything is written
    when the problem shows in the directory, while writing when a member's data exceeds its
    declared size.
    """
    path, target = Path(path), Path(target)
    try:
        with zipfile.ZipFile(path) as archive:
            members = check_zip(archive, path.name)
            written = 0
            for info, relative in members:
                destination = target.joinpath(*relative.parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(destination, "wb") as sink:
                    size = 0
                    while chunk := source.read(_CHUNK):
                        size += len(chunk)
                        written += len(chunk)
                        if size > info.file_size or written > config.ZIP_MAX_TOTAL_BYTES:
                            raise LiverSegError(f"{path.name}: {info.filename!r} unpacks to more than it declares; refusing the zip")
                        sink.write(chunk)
    except zipfile.BadZipFile as error:
        raise LiverSegError(f"{path.name} is not a readable zip ({reason(error)}); zip the DICOM folder again") from None
    except (EOFError, zlib.error, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as error:
        raise LiverSegError(f"{path.name} cannot be unpacked ({reason(error)}); zip the DICOM folder again with standard compression") from None
    return len(members)

