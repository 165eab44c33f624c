import ArgumentParser

MalrunCommand.main()
