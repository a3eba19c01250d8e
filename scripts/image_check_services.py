"""Host-side services for scripts/check-images.sh, run from the development .venv.

    python scripts/image_check_services.py kmock KUBECONFIG_PATH
        KMock (the API server of the kopf tests, tests/kube_harness.py) on 127.0.0.1,
        serving the built-in API and the AutoVision CRDs; writes a kubeconfig
        pointing at it and serves until SIGTERM.
    python scripts/image_check_services.py s3 DATA_DIR ENV_PATH
        The embedded SeaweedFS (``weed mini``) on 127.0.0.1; writes the storage
        variables a Job would get (KEY=VALUE lines) and serves until SIGTERM.

Not part of the per-push tests: only scripts/check-images.sh starts these.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


async def serve_kmock(kubeconfig: Path) -> None:
    sys.path.insert(0, str(REPO))
    import kmock
    from tests.kube_harness import ApiServer, declare_resources, write_kubeconfig

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with ApiServer() as server, kmock.Server(server) as http:
        declare_resources(server)
        write_kubeconfig(kubeconfig, str(http.url).rstrip("/"))
        print(f"kmock: serving on {http.url}", flush=True)
        await stop.wait()


def serve_s3(data_dir: Path, env_path: Path) -> None:
    from autovision.contract import env
    from autovision.embedded_s3 import EmbeddedS3

    data_dir.mkdir(parents=True, exist_ok=True)
    with EmbeddedS3(data_dir) as s3:
        lines = {
            env.STORAGE_ROOT: f"s3://{s3.bucket}/autovision",
            env.S3_ENDPOINT_URL: s3.endpoint_url,
            env.AWS_ACCESS_KEY_ID: s3.access_key,
            env.AWS_SECRET_ACCESS_KEY: s3.secret_key,
        }
        temporary = env_path.with_suffix(".tmp")
        temporary.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
        temporary.replace(env_path)
        print(f"s3: serving on {s3.endpoint_url}", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


def main(argv: list[str]) -> None:
    if argv[:1] == ["kmock"] and len(argv) == 2:
        asyncio.run(serve_kmock(Path(argv[1])))
    elif argv[:1] == ["s3"] and len(argv) == 3:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        serve_s3(Path(argv[1]), Path(argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
