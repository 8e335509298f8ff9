//! gradcheck: to be written.
