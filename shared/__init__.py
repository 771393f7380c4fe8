"""Code shared by the gateway and the workers. Imports nothing from api/ or worker/."""
