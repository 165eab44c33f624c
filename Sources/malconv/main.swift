import ArgumentParser

MalconvCommand.main()
