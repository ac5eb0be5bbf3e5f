"""Health endpoints. HEALTHY is what a bad release breaks."""

HEALTHY = True


def health():
    return (200, "healthy\n") if HEALTHY else (500, "unhealthy\n")
