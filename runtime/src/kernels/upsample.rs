//! Fast upsample kernels: to be written.
