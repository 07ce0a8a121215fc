"""What the folder watcher must know about the OS: network drives, inotify limits, lost events.

OS notifications (inotify, FSEvents, ReadDirectoryChanges) do not see changes made by other
machines on a network drive, and inotify needs one watch per folder out of a per-user budget.
The watcher asks here which folders to poll instead, and learns when notifications were lost.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

# File systems whose changes may come from elsewhere (another machine, the VM host), which
# local notifications never report.
NETWORK_FS_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "ncpfs", "afs", "9p", "virtiofs", "ceph", "glusterfs",
     "lustre", "gpfs", "beegfs", "davfs", "fuse.sshfs", "sshfs", "fuse.davfs2", "fuse.rclone", "fuse.s3fs",
     "fuse.gcsfuse", "fuse.glusterfs", "fuse.cephfs", "fuse.smbnetfs", "fuse.vmhgfs-fuse", "vboxsf"}
)  # fmt: skip

INOTIFY_WATCHES_SETTING = "fs.inotify.max_user_watches"
_RAISE_WATCHES_HINT = f"raise it (sudo sysctl {INOTIFY_WATCHES_SETTING}=524288) to be notified instead"


def is_network_path(path: str) -> bool:
    """Whether `path` lies on a network (or VM-shared) file system; False when unknown."""
    if sys.platform.startswith("linux"):
        fstype = _linux_fstype(path)
        return fstype is not None and (fstype in NETWORK_FS_TYPES or fstype.startswith("fuse.sshfs"))
    if sys.platform == "win32":
        return _windows_is_remote(path)
    return False


def _linux_fstype(path: str) -> str | None:
    """The file system type of the mount holding `path` (from /proc/self/mountinfo)."""
    try:
        target = os.path.realpath(path)
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.readlines()
    except OSError:
        return None
    best, best_type = "", None
    for line in lines:
        # id parent major:minor root mount-point options [optional...] - fstype source super-options
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount_point = _unescape_mount(fields[4])
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, right.split()[0]
    return best_type


def _unescape_mount(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text


def _windows_is_remote(path: str) -> bool:  # pragma: no cover - Windows only
    full = os.path.abspath(path)
    if full.startswith("\\\\"):
        return True  # a UNC path: \\server\share
    drive = os.path.splitdrive(full)[0]
    if not drive:
        return False
    DRIVE_REMOTE = 4
    return ctypes.windll.kernel32.GetDriveTypeW(drive + "\\") == DRIVE_REMOTE


# --- inotify's budget ------------------------------------------------------------------------

_IN_CLOEXEC = 0o2000000
_IN_NONBLOCK = 0o4000
_IN_DELETE_SELF = 0x00000400
_libc = None


def _inotify_libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return _libc


def inotify_has_room(path: str) -> tuple[bool, str]:
    """Probe whether one more inotify watch can be added (Linux); (True, "") elsewhere.

    watchdog adds one watch per subfolder and quietly skips those it cannot add, so after
    scheduling a folder we check that the budget was not exhausted along the way: if one
    more watch fits, every subfolder got its own.
    """
    if not sys.platform.startswith("linux"):
        return True, ""
    try:
        libc = _inotify_libc()
        fd = libc.inotify_init1(_IN_CLOEXEC | _IN_NONBLOCK)
    except (OSError, AttributeError):
        return True, ""  # no inotify here: nothing to probe
    if fd < 0:
        return False, describe_inotify_error(OSError(ctypes.get_errno(), "inotify_init1 failed"))
    try:
        wd = libc.inotify_add_watch(fd, os.fsencode(path), _IN_DELETE_SELF)
        if wd < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOSPC, errno.EMFILE):
                return False, describe_inotify_error(OSError(err, os.strerror(err)))
        return True, ""
    finally:
        os.close(fd)  # closing the instance releases the probe watch


def describe_inotify_error(exc: OSError) -> str:
    """A one-line explanation of why OS notifications cannot watch a folder."""
    if exc.errno == errno.ENOSPC:
        limit = _read_first_line("/proc/sys/fs/inotify/max_user_watches")
        shown = f" ({INOTIFY_WATCHES_SETTING} = {limit})" if limit else ""
        return f"the inotify watch limit is reached{shown}; {_RAISE_WATCHES_HINT}"
    if exc.errno == errno.EMFILE:
        limit = _read_first_line("/proc/sys/fs/inotify/max_user_instances")
        shown = f" (fs.inotify.max_user_instances = {limit})" if limit else ""
        return f"the inotify instance limit is reached{shown}"
    return f"file change notifications are unavailable: {exc.strerror or exc}"


def _read_first_line(path: str) -> str:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.readline().strip()
    except OSError:
        return ""


# --- lost notifications ----------------------------------------------------------------------


class OverflowSignal(logging.Handler):
    """Counts inotify queue overflows (the kernel dropped events; what changed is unknown).

    watchdog recovers its own watches after an overflow and says so only in its log, so we
    listen there; the watcher then rescans its folders by stat.
    """

    LOGGER = "watchdog.observers.inotify_c"

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self._lock_count = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            with self._lock_count:
                self.count += 1

    def install(self) -> None:
        logger = logging.getLogger(self.LOGGER)
        if logger.getEffectiveLevel() > logging.WARNING:
            logger.setLevel(logging.WARNING)
        logger.addHandler(self)

    def uninstall(self) -> None:
        logging.getLogger(self.LOGGER).removeHandler(self)
