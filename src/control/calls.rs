//! Call tracking by Call-ID. STUB (helper H3).
