"""`modelops-operator`: run the operator (cluster-wide, or one namespace)."""

from __future__ import annotations

import argparse
import os

import kopf

from . import handlers  # noqa: F401  (registers the handlers)
from .peering import Peering, own_identity


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="modelops-operator", description=__doc__)
    parser.add_argument("--namespace", default=os.environ.get("MODELOPS_WATCH_NAMESPACE"),
                        help="watch one namespace only (namespaced RBAC); default: the whole cluster")
    parser.add_argument("--liveness-port", type=int, default=int(os.environ.get("MODELOPS_HEALTH_PORT", "8080")),
                        help="port of the /healthz liveness endpoint")
    parser.add_argument("--peering", default=os.environ.get("MODELOPS_PEERING"),
                        help="kopf peering object name, so that replicas never act at once; default standalone")
    parser.add_argument("--priority", type=int, default=int(os.environ.get("MODELOPS_PRIORITY", "0")),
                        help="peering priority; give each replica a distinct one")
    args = parser.parse_args(argv)
    if args.namespace:
        os.environ["MODELOPS_WATCH_NAMESPACE"] = args.namespace
    kopf.configure(verbose=False)
    # kopf is given the identity rather than left to pick one, so that the alias poller can find this
    # replica's own entry in the peering object (handlers.start reads it from the memo).
    peering = Peering(args.peering or None, own_identity(), args.priority, args.namespace or None)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=[args.namespace] if args.namespace else (),
        liveness_endpoint=f"http://0.0.0.0:{args.liveness_port}/healthz",
        standalone=not args.peering,
        peering_name=args.peering,
        priority=args.priority,
        identity=peering.identity,
        memo=kopf.Memo(peering=peering),
    )


if __name__ == "__main__":
    main()
