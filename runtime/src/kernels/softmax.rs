//! Fast softmax kernels: to be written.
