"""The operator's Kubernetes connection: kopf logs in as the official client does."""

from __future__ import annotations

from kubernetes.client import Configuration

from autovision_operator.kube import connection_info


def test_kopf_logs_in_as_the_client_does() -> None:
    configuration = Configuration(host="https://10.0.0.1:443")
    configuration.api_key["BearerToken"] = "bearer service-account-token"
    configuration.ssl_ca_cert = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    info = connection_info(configuration)
    assert info.server == "https://10.0.0.1:443"
    assert info.as_http_headers() == {"Authorization": "bearer service-account-token"}
    assert info.ca_path == configuration.ssl_ca_cert
    assert info.insecure is False
