"""Operating the jobs: metrics per micro-batch, alerts, and the HTML report built from them."""
