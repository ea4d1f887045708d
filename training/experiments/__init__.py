"""One-off experiments behind decisions recorded in docs/ (run by hand; never imported by the
package, the server or the tests)."""
