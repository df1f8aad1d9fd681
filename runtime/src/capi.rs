//! The C ABI over the runtime (see `include/ssmc_runtime.h`).
