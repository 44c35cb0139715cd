package catalog

// SignRaw exposes sign to the external tests: key id + ed25519 signature of msg.
var SignRaw = sign

// ReceiptDomain exposes receiptDomain to the external tests.
const ReceiptDomain = receiptDomain
