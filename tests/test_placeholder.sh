# PLACEHOLDER so the suite is not empty while modules land; deleted once real tests exist.
"$SIGFLOW_BUILD_DIR/sigflow" --help >/dev/null
