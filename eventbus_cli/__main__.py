from eventbus_cli.main import main

main()
