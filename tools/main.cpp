// blockctl: thin main; everything is in blockctl_lib so that tests link it.
#include "tools/cli.h"

int main(int argc, char** argv) { return blockd::tools::run_cli(argc, argv); }
