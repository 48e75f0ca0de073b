"""Local stand-ins for Entra ID, Key Vault and Microsoft Graph that speak the real wire protocols.

They run as HTTPS servers on loopback with a test CA, so msal, azure-keyvault-secrets and httpx talk
to them unchanged. Development and test only: never deployed with the Function App.
"""
