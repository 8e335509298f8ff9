//! Data sets: loaders, normalization, augmentation and batching.
