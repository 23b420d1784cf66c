//! One certificate authority per cluster, and the certificates its components use.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::TestbedError;
use crate::files::write_private;

/// The first address of the service range; the apiserver's certificate names it.
pub const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

/// A certificate and key pair on disk.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8).
    pub key: PathBuf,
}

/// Every certificate and key of one cluster, written under `<cluster>/pki/`.
#[derive(Clone, Debug)]
pub struct ClusterPki {
    /// The cluster CA certificate (`ca.crt`).
    pub ca_cert: PathBuf,
    /// kube-apiserver serving certificate.
    pub apiserver: CertFiles,
    /// Client certificate of the admin user (`O=system:masters`).
    pub admin: CertFiles,
    /// kube-apiserver's client certificate towards kwok's kubelet server.
    pub kubelet_client: CertFiles,
    /// kube-controller-manager's client certificate.
    pub controller_manager: CertFiles,
    /// kube-scheduler's client certificate.
    pub scheduler: CertFiles,
    /// kwok's client certificate towards the apiserver.
    pub kwok_client: CertFiles,
    /// kwok's kubelet-like serving certificate.
    pub kwok_serving: CertFiles,
    /// ServiceAccount token signing key (private, PKCS#8).
    pub sa_key: PathBuf,
    /// ServiceAccount token verification key (public).
    pub sa_pub: PathBuf,
}

/// What a leaf certificate is for.
enum Usage {
    Server(Vec<SanType>),
    Client {
        cn: String,
        org: Option<&'static str>,
    },
}

impl ClusterPki {
    /// Makes a fresh CA and all certificates for `cluster` at `address` in `dir`.
    pub fn generate(dir: &Path, cluster: &str, address: Ipv4Addr) -> Result<Self, TestbedError> {
        let err = |reason: rcgen::Error| TestbedError::Pki {
            cluster: cluster.to_owned(),
            reason: reason.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(TestbedError::io("create directory", dir))?;

        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dn(&format!("causeway-testbed-{cluster}-ca"), None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(err)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
        let ca_cert_path = dir.join("ca.crt");
        write_private(&ca_cert_path, ca_cert.pem().as_bytes())?;
        write_private(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
        let issuer = Issuer::new(ca_params, ca_key);

        let ip = SanType::IpAddress(IpAddr::V4(address));
        let mut apiserver_sans = vec![ip.clone(), SanType::IpAddress(IpAddr::V4(SERVICE_IP))];
        for name in [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
        ] {
            apiserver_sans.push(SanType::DnsName(name.try_into().map_err(err)?));
        }
        let leaf = |name: &str, usage: Usage| -> Result<CertFiles, TestbedError> {
            let mut params = CertificateParams::default();
            match usage {
                Usage::Server(sans) => {
                    params.distinguished_name = dn(name, None);
                    params.subject_alt_names = sans;
                    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                }
                Usage::Client { cn, org } => {
                    params.distinguished_name = dn(&cn, org);
                    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                }
            }
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate().map_err(err)?;
            let cert = params.signed_by(&key, &issuer).map_err(err)?;
            let files = CertFiles {
                cert: dir.join(format!("{name}.crt")),
                key: dir.join(format!("{name}.key")),
            };
            write_private(&files.cert, cert.pem().as_bytes())?;
            write_private(&files.key, key.serialize_pem().as_bytes())?;
            Ok(files)
        };
        let client = |cn: &str, org| Usage::Client {
            cn: cn.to_owned(),
            org,
        };

        let sa = KeyPair::generate().map_err(err)?;
        let sa_key = dir.join("sa.key");
        let sa_pub = dir.join("sa.pub");
        write_private(&sa_key, sa.serialize_pem().as_bytes())?;
        write_private(&sa_pub, sa.public_key_pem().as_bytes())?;

        Ok(Self {
            ca_cert: ca_cert_path,
            apiserver: leaf("apiserver", Usage::Server(apiserver_sans))?,
            admin: leaf("admin", client("causeway-admin", Some("system:masters")))?,
            kubelet_client: leaf(
                "apiserver-kubelet-client",
                client("kube-apiserver-kubelet-client", Some("system:masters")),
            )?,
            controller_manager: leaf(
                "controller-manager",
                client("system:kube-controller-manager", None),
            )?,
            scheduler: leaf("scheduler", client("system:kube-scheduler", None))?,
            kwok_client: leaf(
                "kwok-client",
                client("kwok-controller", Some("system:masters")),
            )?,
            kwok_serving: leaf("kwok-serving", Usage::Server(vec![ip]))?,
            sa_key,
            sa_pub,
        })
    }
}

fn dn(cn: &str, org: Option<&str>) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::generate(dir.path(), "a", Ipv4Addr::new(127, 0, 0, 10)).unwrap();
        for p in [
            &pki.ca_cert,
            &pki.admin.cert,
            &pki.admin.key,
            &pki.sa_key,
            &pki.sa_pub,
        ] {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(text.starts_with("-----BEGIN"), "{}", p.display());
        }
        let ca = std::fs::read_to_string(&pki.ca_cert).unwrap();
        let admin = std::fs::read_to_string(&pki.admin.cert).unwrap();
        assert_ne!(ca, admin);
    }
}
