// Package e2e holds the browser go-live test: the product's go-live
// checklist driven through the admin console in headless Chromium against
// the host, the real plugin from a signed dev marketplace, versitygw as the
// bucket and a public-URL stand-in.
package e2e
