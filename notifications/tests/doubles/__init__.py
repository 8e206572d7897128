"""Local push services for tests and benchmarks: real servers on 127.0.0.1 that check what a real
push service checks (VAPID or APNs JWT signatures, payload encryption) and record what arrived."""
