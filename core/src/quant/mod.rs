//! Block formats of the weight and activation types the kernels read, and
//! their reference (de)quantizers.
