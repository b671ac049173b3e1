// The file system PHP sees: the shim's in-memory preopen, with one correction. The shim reports
// a directory descriptor with no rights at all, and wasi-libc's access() checks W_OK and R_OK
// against the preopen's inheriting rights, so PHP's is_writable() and is_readable() said false
// for every path (WordPress's SQLite plugin refuses to start over it). The root grants them all:
// the whole tree is the page's own memory.
import { PreopenDirectory } from "./shim/index.js";

// Every right WASI preview 1 defines (bits 0-28).
const ALL_RIGHTS = (1n << 29n) - 1n;

export class Root extends PreopenDirectory {
  fd_fdstat_get() {
    const answer = super.fd_fdstat_get();
    if (answer.fdstat) {
      answer.fdstat.fs_rights_base = ALL_RIGHTS;
      answer.fdstat.fs_rights_inherited = ALL_RIGHTS;
    }
    return answer;
  }
}
