//! Kubeconfig files with the certificates embedded, so a file works wherever it is copied.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::TestbedError;
use crate::files::write_private;
use crate::pki::CertFiles;

#[derive(Serialize)]
struct Kubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    clusters: [Named<'a, ClusterEntry>; 1],
    users: [Named<'a, UserEntry>; 1],
    contexts: [Named<'a, ContextEntry<'a>>; 1],
    #[serde(rename = "current-context")]
    current_context: &'a str,
}

#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    inner: T,
}

#[derive(Serialize)]
struct ClusterEntry {
    cluster: ClusterData,
}

#[derive(Serialize)]
struct ClusterData {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    ca_data: String,
}

#[derive(Serialize)]
struct UserEntry {
    user: UserData,
}

#[derive(Serialize)]
struct UserData {
    #[serde(rename = "client-certificate-data")]
    cert_data: String,
    #[serde(rename = "client-key-data")]
    key_data: String,
}

#[derive(Serialize)]
struct ContextEntry<'a> {
    context: ContextData<'a>,
}

#[derive(Serialize)]
struct ContextData<'a> {
    cluster: &'a str,
    user: &'a str,
}

/// Writes a kubeconfig for `server` with one cluster, user and context named `name`.
pub(crate) fn write(
    path: &Path,
    name: &str,
    server: &str,
    ca_cert: &Path,
    client: &CertFiles,
) -> Result<(), TestbedError> {
    let read = |p: &Path| std::fs::read(p).map_err(TestbedError::io("read", p));
    let ca = STANDARD.encode(read(ca_cert)?);
    let cert = STANDARD.encode(read(&client.cert)?);
    let key = STANDARD.encode(read(&client.key)?);
    let doc = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: [Named {
            name,
            inner: ClusterEntry {
                cluster: ClusterData {
                    server: server.to_owned(),
                    ca_data: ca,
                },
            },
        }],
        users: [Named {
            name,
            inner: UserEntry {
                user: UserData {
                    cert_data: cert,
                    key_data: key,
                },
            },
        }],
        contexts: [Named {
            name,
            inner: ContextEntry {
                context: ContextData {
                    cluster: name,
                    user: name,
                },
            },
        }],
        current_context: name,
    };
    let yaml = serde_yaml_ng::to_string(&doc).map_err(|e| TestbedError::State {
        path: path.to_path_buf(),
        reason: format!("cannot render kubeconfig: {e}"),
    })?;
    write_private(path, yaml.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_loadable_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.crt", "c.crt", "c.key"] {
            std::fs::write(dir.path().join(f), format!("pem {f}")).unwrap();
        }
        let files = CertFiles {
            cert: dir.path().join("c.crt"),
            key: dir.path().join("c.key"),
        };
        let path = dir.path().join("kubeconfig");
        write(
            &path,
            "idc-bj",
            "https://127.0.0.10:6443",
            &dir.path().join("ca.crt"),
            &files,
        )
        .unwrap();
        let v: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["current-context"], "idc-bj");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://127.0.0.10:6443"
        );
        assert_eq!(v["contexts"][0]["context"]["user"], "idc-bj");
        let ca = v["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap();
        assert_eq!(STANDARD.decode(ca).unwrap(), b"pem ca.crt");
    }
}
