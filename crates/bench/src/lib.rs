//! The float-vs-int8 benchmark matrix. Not written yet: this crate is the place reserved for
//! it at the end of the data -> models -> train -> quant -> bench chain.
