//! Fixed test keys (generated once with `openssl genpkey`); never used outside tests.

/// RSA 2048 private key (PKCS#8).
pub const RSA_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC8cjAS4w+5YydJ
BsQsJUrbBzTmgFbMAWZtJLEGS/OWATxiKbfpTawlrkmexamsRxfEl7sorFcxb4TQ
2lkrMzj0h3Ob0uZerTy9CMpe6w5WIn1cxRx0OWiv2vNC4EfWE9PLSqgpAIGIGYbv
7e7nwt2ZT+FQeRMzKDSJ4IQmsxQBpuswRKz+4Mm7SEIzfLCBqIaCJqr0/g8VpQbL
jnPUQgDiGtPyBxtlriEfSPBl5NBNX06j9lhZVO/DhoS84xFcQK9Yk4w6iBcDPXV9
4BiGq5tKjH+oFlH0lqkhUF80RSUH8zc0ixfbN6KdU8uXJDHM9WHrG+dBwhNoEw2K
eC3+xAwLAgMBAAECggEAUcPqAAfthq7zGMiKzezQcgDKf0koYBQrcSf+d5D0/B1F
KgKX/e7pxt+8qdtyJ4IhWffMCXXdz2Fn64cSMaBkEhXDn9T+iA360LrDtDOhYNZO
NraABh3ywnrqGhZelRC9UPPvyvqhOYB6ABjpFD6FEESMqvId1pCXW0vDi1cgUyZt
gbh6n8pMhcuvitOPEuMWIGFuWTPiRS/DLirjhRla7YMwn9DP1YnUV6txbZOtFGmr
15qj1vC39u7wAA8co7KflfCFjGE6Pq3GX2BGnHYDHeEcBYFn9G4OT5+fbVVmRAYS
fHgezHa86vXZrahe2gnCjaVhqqwDvRwT130QD1W3AQKBgQD7jAg1ZSfD6vYSO7Us
8qf/uB9km3TFE2bGMr9p2uarjHWhJqP1B7mNPBCjIssRZ61EqkSlhO18AUVgtBD6
khl6Xt/Kl+vhisfIqyC0nDwge/obylIUsOrmUw4r9CcuT/d91dGchu4UWl18s5dK
yXPhUZUuCjiTR49QYhch17Wf4QKBgQC/yDFop1OT6T0StGAcL5cdNeuhSf7eZjDH
8Zes4vNDH5L+aGrAU9t/T925m+3TImu1Mdk1EO7cu6yka+4ZW21KSeWixBM8kMRG
5xHfdjkt7NGbllgxsDmeT87CKxRRBUuSvmGohHSvH8E4/7E7i4x68423PGInteyz
lTH8TeVZawKBgBRmd+f0qzPtY0V5SCk8CLnpccpT/TVabHRYe0OXeCujeYq3OobN
uJOmsma4lKV1tgyijmyqCiSLadf84n+fx6cv+JBSn9Or0KYKkt1y6kFsLI2CbAO3
kWVaiQSxiVftLlIrPBOosbg+1+QcIIH1MousdR/Fvm7bV9kaC2w4NUehAoGAaF94
XF9sQfxWy541DEHuOOyGf3H47mqpM7fM9z9QawB9DE4hguhgdeouXnx5M0XxXlxx
vMqpZKIS9Cz1GQHD+gE7o5iYa4bR+1B4TqhVuCPBc66f8vLYeMswWEX/uZRrK8LG
/WKQ6loa2310pFZvLt7sCoQnWztMRfP1jz2Ji18CgYEAm3H4gFp4LVUuD8ambZ/1
OXLOMEZholJJyobLaF6yZPjJoq2I3zviwlBeScS5qlpmpbDn7TH71Iy4wBmHbD8c
EK+tpJ3XYxfSL4/94xKyyyu6UN11m00cV7nQMBj2wk5PvC2MWJkZuwXguSzlySuW
6OuVsilyETp/WKGhEnwIi3U=
-----END PRIVATE KEY-----
";

/// Public half of `RSA_PRIVATE` (SPKI).
pub const RSA_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAvHIwEuMPuWMnSQbELCVK
2wc05oBWzAFmbSSxBkvzlgE8Yim36U2sJa5JnsWprEcXxJe7KKxXMW+E0NpZKzM4
9Idzm9LmXq08vQjKXusOViJ9XMUcdDlor9rzQuBH1hPTy0qoKQCBiBmG7+3u58Ld
mU/hUHkTMyg0ieCEJrMUAabrMESs/uDJu0hCM3ywgaiGgiaq9P4PFaUGy45z1EIA
4hrT8gcbZa4hH0jwZeTQTV9Oo/ZYWVTvw4aEvOMRXECvWJOMOogXAz11feAYhqub
Sox/qBZR9JapIVBfNEUlB/M3NIsX2zeinVPLlyQxzPVh6xvnQcITaBMNingt/sQM
CwIDAQAB
-----END PUBLIC KEY-----
";

/// A second RSA 2048 key, for rotation.
pub const RSA2_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCo27WX80N9nbHi
1hZ4nC8+rOF3YYhvDC1x0NYBqdNci7mYXuIDQpoRVvOrV1BCK5unkL74RtLt89Lv
g7eo/XmRDVCJecWcZZhrgNsndXa7sIHfI8nnhP12y9c1sHBJwtKmZBGv6ontEt+Y
grz0ntsee1RsOUyFcadBUeZulR94XBLa/bv0Y5ueVxwK5mA9aKstZ/+d3GweUiTc
mqyzcxQUddPqYVqVtM6IffVjGb4CGL2L//aN7WzZd2ZKyJEb1kkTLaKbl8eEAsl1
+MoJtci+b5TPROodueLFHOulEsu1KWE3Ey7lFmsNp+gZlcohkzFsSIGbKG91kXdQ
ndWLgm6FAgMBAAECggEAI9pkxCL1j1g6o0agRlMpT+Y+yE2X/bYo9wvnyLoho/qR
+XmaBSWw12IuQlD7fFVMi0d3WPmWw0n8XXlK95F8bLFWSp5luEe1FYxqXAY7o+3+
IV40ulkZRU5SP3bbXLoGZqiEPeUvjHwvqC8IRmttbJs0qXcAGaxwXjTw18WHhVM0
unaGRrXNMpqA+kA0a3tL82v93JUfKweY4n50ZqzGeEl0TypMOkmPJjkolBHGY+Ae
VzSLLu17DHRx7hBNUpAGiBDiw9Ui8ibyOIaLCqmKDr3+jZB9pMmPqKxHkPWIQvpB
QFNiF7IQmBdy+q4Z+Nr+cB0zTy6bJZzSdb/o8GuTCQKBgQDmBAQWkbibFieHUGC/
U+R95oPWZKDdqCha4laFr8pxM5mmI7LUknOoBIZ8/z2oCssiIn6XEs6IEhAXle4w
BIfzHDzHbuXOioxvk+dZgqlVgeLdZOJmaQbCIejNeL0BFji1oLmWkweJavDxNJlx
v34PMQVr0p97meHeCAbd064l+QKBgQC77wnb0W0aKS37yMyjXo34TsVXODGKDXz3
5k7vXYZ2BBP9O7LyAt9AZR5Jg8R+Br9R7/sgfWdLuu0D1IYhxVFOIWAPeAh3Rjnj
B3zO7H0YlZYD7ruNclQW0q2q5uE1r+W3Fq5TAz8p7uok0NlAANFbqkpd/Uyi43ka
8xBnP7k/7QKBgQDLKprt0HLN0YjCtZVvCcvWBOlIUoPgpWpXtHoWBUr8KEa7/+Yy
atVrf+vGtrCgIECCexNzn3H7sHC0VIMZuLbYXoW05lhn0ervlyWO46FsXJilUznC
mVwV11vJOa9AKX+XtkqXHHFYyLPfacVrOmg/RN5z+YtS4n4l3tMp1pKJCQKBgAIi
6IDIM65Nc4leMf1VcNW2x4WDTQTdvGLxCkqsTIAA8d06FYGsyK7pt1tslQo9t2UO
DlPDOS5iNJmLi+7MWG1D8dybJ7V7ZeMPzbpoc8+Yu7jVuOoVt6D+yhycPUkn87uO
FXM6ITivz5eVjDKvD7I0EF5bJ8jePx0wUCpsTgXNAoGBAKyU39eSWgzL2xQdB7KK
n3+c2WGH0a7B9H7EXHO4/D9JgHVgBnQxllvOukX5HPL5OXBTbc5c3OSixukVMCpS
FPBkQVUzdtEpVPXXn+rRa1hBLxzXadZVmSKalSp4yuTmJdkcXX8k9HkaIAIuViCR
xWMAzxKEiG5K+1oDJYj9+d8q
-----END PRIVATE KEY-----
";

/// EC P-256 private key (PKCS#8).
pub const EC_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgn+YTh+F0IpnSwAQk
Zg9KdoIHqlrGZx57/n7MoQUqPrmhRANCAASfcRxgeOuzkS6ltSiT2Uzh+xRpYJyB
8FN5GhORgqSpw6XbZMpzazwXiQ8yCfxqDFn7wgByYDrSx1kewFOuKGoN
-----END PRIVATE KEY-----
";

/// Ed25519 private key (PKCS#8).
pub const ED_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIIyj3EjI0+Lj3tuMVu5kBIOc0ApGWgu9HjYiFasVN3ZB
-----END PRIVATE KEY-----
";

/// A tiny JWKS endpoint on 127.0.0.1:0 for tests: serves `body` (replaceable at
/// any time) and counts the requests it gets.
pub struct JwksServer {
    /// Where the JWKS is served.
    pub url: String,
    /// Requests served so far.
    pub hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The JWKS document served.
    pub body: std::sync::Arc<std::sync::Mutex<String>>,
}

/// Starts a [`JwksServer`] on the current tokio runtime.
pub async fn jwks_server(body: String) -> std::io::Result<JwksServer> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let hits = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(Mutex::new(body));
    let (h, b) = (hits.clone(), body.clone());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            let doc = b.lock().map(|d| d.clone()).unwrap_or_default();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{doc}",
                    doc.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(JwksServer {
        url: format!("http://{addr}/.well-known/jwks.json"),
        hits,
        body,
    })
}
