#!/bin/sh
# azd preprovision hook: with M365_PRIVATE_NETWORKING=true the app subnet is delegated to
# Microsoft.App/environments (Flex Consumption's VNet integration), which needs the Microsoft.App
# resource provider registered in the subscription. Bicep cannot register a provider, and ARM
# refuses the subnet without it, so this registers it first (Azure CLI; needs rights to register
# providers, e.g. Contributor on the subscription).
# https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to#enable-virtual-network-integration
set -eu

if [ "${M365_PRIVATE_NETWORKING:-false}" != "true" ]; then
  exit 0
fi
if ! command -v az >/dev/null 2>&1; then
  echo "m365send: M365_PRIVATE_NETWORKING=true needs the Microsoft.App resource provider; install the Azure CLI, or run 'az provider register --namespace Microsoft.App' where it is installed, then azd provision again" >&2
  exit 1
fi
subscription=${AZURE_SUBSCRIPTION_ID:+--subscription $AZURE_SUBSCRIPTION_ID}
# shellcheck disable=SC2086 # $subscription is empty or two words on purpose
state=$(az provider show --namespace Microsoft.App --query registrationState --output tsv $subscription)
if [ "$state" = "Registered" ]; then
  echo "m365send: the Microsoft.App resource provider is registered"
  exit 0
fi
echo "m365send: registering the Microsoft.App resource provider (was: ${state:-unknown}); this can take a few minutes"
# shellcheck disable=SC2086
az provider register --namespace Microsoft.App --wait $subscription
