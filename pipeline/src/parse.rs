//! Parse: link, IP and UDP headers as zero-copy views. STUB (helper H1).
