from app.cli.docproc.commands import main

main()
