//! TLS material for podcred: load and reload PEM files into rustls, generate CAs and serving certificates.
