"""Container HEALTHCHECK: exit 0 when the service answers GET /ready with 200, else 1.

Python's urllib rather than curl, which slim and CUDA runtime images do not ship.
"""

import os
import sys
import urllib.request

host = os.environ.get("NMT_HOST", "")
if host in ("", "0.0.0.0", "::"):
    host = "127.0.0.1"  # listening on all interfaces: loopback reaches it
elif ":" in host:
    host = f"[{host}]"
url = f"http://{host}:{os.environ.get('NMT_PORT', '8000')}/ready"
# An empty ProxyHandler: a proxy set in the container's environment must not see this request.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(url, timeout=float(os.environ.get("NMT_HEALTHCHECK_TIMEOUT", "4"))) as response:
        ok = response.status == 200
except Exception as error:  # refused, timed out, 503 while loading: all mean "not ready"
    sys.stderr.write(f"unhealthy: GET {url}: {error}\n")
    sys.exit(1)
sys.exit(0 if ok else 1)
