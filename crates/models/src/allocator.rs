//! Keeping freed tensor buffers in the process (glibc only).
//!
//! glibc's `malloc` serves large blocks with `mmap` and returns them to the operating
//! system on `free`; its threshold adapts but stays far below the tens of megabytes of
//! an activation at 224×224. Every tensor a pass allocates then comes back as fresh pages
//! that the kernel zeroes on first touch: about a tenth of the paper's four explanation
//! methods on a ResNet18 batch went to those page faults (`docs/benchmarks.md`).
//! [`reuse_freed_memory`] raises the `mmap` threshold to glibc's largest (32 MiB) and keeps
//! freed memory at the top of the heap, so buffers are reused. The process then keeps its
//! peak heap until it exits: right for a command-line run, which is why only binaries
//! (the `leukex` command, the benchmarks) call it, never a library function.

/// glibc's largest `mmap` threshold on 64-bit systems (`HEAP_MAX_SIZE / 2`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Makes glibc keep and reuse freed blocks up to 32 MiB instead of unmapping them (see
/// the module docs). Returns whether the settings were applied: false on other
/// platforms and allocators, where it does nothing.
pub fn reuse_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes allocator parameters; it is called before the
        // program's work, and glibc serialises it with the allocator's own locks.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_TOP_PAD, 128 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_settings() {
        assert!(super::reuse_freed_memory());
    }
}
